"""Blind overlap against the real Argilla server: with min_submitted >= 2 each annotator labels in a dataset
of their own; through their own key no endpoint shows another annotator's answer or the hidden metadata;
concurrent annotators give each item exactly its overlap; cancel withdraws from every annotator's dataset;
an annotator added later tops up short coverage."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import select, update

from annotation.blind import annotator_datasets
from annotation.dataset import ensure_dataset
from annotation.gateway import pull_labels, push_items, withdraw_cancelled
from annotation.progress import round_progress
from annotation.simulated.bot import AnnotatorBot
from storage.models import Label, Round
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator_in, fresh_workspace, own_records, owner, respond, unique

pytestmark = pytest.mark.argilla
SHOWN_METADATA = {"round", "priority"}


def _labels_per_item(uow) -> Counter:
    with uow() as s:
        return Counter(s.scalars(select(Label.item_id)))


def _reads(stack: ArgillaTarget, key: str, record_ids: set[str]) -> tuple[list[dict], dict[str, int]]:
    """Everything an annotator's key can read about records: every dataset it lists (metadata properties,
    records search with responses) and each record id asked for directly with its responses. Returns the
    JSON bodies and the status code per directly asked record."""
    bodies: list[dict] = []
    codes: dict[str, int] = {}
    with httpx.Client(base_url=stack.url, headers={"X-Argilla-Api-Key": key}, timeout=60) as http:
        datasets = http.get("/api/v1/me/datasets").json()["items"]
        for d in datasets:
            props = http.get(f"/api/v1/me/datasets/{d['id']}/metadata-properties").json()["items"]
            assert {p["name"] for p in props} <= SHOWN_METADATA, d
            found = http.post(
                f"/api/v1/me/datasets/{d['id']}/records/search",
                params={"include": "responses", "limit": 1000},
                json={},
            )
            assert found.status_code == 200, found.text
            bodies += [i["record"] for i in found.json()["items"]]
        for rid in record_ids:
            r = http.get(f"/api/v1/records/{rid}", params={"include": "responses"})
            codes[rid] = r.status_code
            if r.status_code == 200:
                bodies.append(r.json())
    return bodies, codes


def test_each_annotator_reads_only_their_own_records_and_answers(argilla_stack: ArgillaTarget, uow) -> None:
    workspace = fresh_workspace(argilla_stack)
    people = [annotator_in(argilla_stack, workspace, f"blind{k}") for k in range(3)]
    name = unique("ds-blind")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=2)
    items = make_round_items(uow, 6)

    report = push_items(uow, dataset, items.round_id, order=items.item_ids[::-1])
    assert report.pushed == 6
    mine = {p.username: own_records(argilla_stack, p, name) for p in people}
    # Each item is with exactly min_submitted annotators, balanced over the three.
    assert Counter(ext for recs in mine.values() for ext in recs) == dict.fromkeys(items.item_ids, 2)
    assert sorted(len(recs) for recs in mine.values()) == [4, 4, 4]
    # Pushing again places nothing twice.
    assert push_items(uow, dataset, items.round_id).pushed == 0
    assert {p.username: own_records(argilla_stack, p, name) for p in people} == mine
    progress = round_progress(dataset, items.round_number)  # counts the annotators' records
    assert (progress.total, progress.completed) == (12, 0)

    for p in people:
        for rid in mine[p.username].values():
            respond(argilla_stack, p, rid, "submitted", preference="a", rationale=f"secret of {p.username}")

    every_record = {rid for recs in mine.values() for rid in recs.values()}
    for p in people:
        bodies, codes = _reads(argilla_stack, p.api_key, every_record)
        own = set(mine[p.username].values())
        assert {rid for rid, code in codes.items() if code == 200} == own
        assert all(code in (403, 404) for rid, code in codes.items() if rid not in own)
        assert {b["id"] for b in bodies} == own  # no other record in any dataset it lists
        for body in bodies:
            assert set(body.get("metadata") or {}) <= SHOWN_METADATA
            assert {r["user_id"] for r in body.get("responses") or []} <= {p.user_id}
        text = repr(bodies)
        assert all(f"secret of {o.username}" not in text for o in people if o is not p)

    assert round_progress(dataset, items.round_number).percent == 100.0
    pulled = pull_labels(uow, dataset, items.round_id)
    assert (pulled.new_labels, pulled.decided, pulled.skipped) == (12, 6, [])
    assert _labels_per_item(uow) == dict.fromkeys(items.item_ids, 2)


def test_concurrent_annotators_answer_each_item_min_submitted_times(
    argilla_stack: ArgillaTarget, uow
) -> None:
    workspace = fresh_workspace(argilla_stack)
    people = [annotator_in(argilla_stack, workspace, f"pace{k}") for k in range(4)]
    name = unique("ds-pace")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=2)
    items = make_round_items(uow, 10, tag="pace ")
    push_items(uow, dataset, items.round_id)

    errors: list[BaseException] = []

    def work(key: str, pace_s: float) -> None:
        rng = random.Random(pace_s)

        def judge(_prompt: str, _a: str, _b: str) -> str:
            time.sleep(pace_s * rng.random())  # each at their own pace
            return rng.choice(["a", "b", "tie"])

        try:
            with AnnotatorBot(argilla_stack.url, key, judge) as bot:
                for dataset_id in bot.dataset_ids(name):
                    bot.run(dataset_id, batch_size=1)
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p.api_key, 0.02 * (k + 1))) for k, p in enumerate(people)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []

    pulled = pull_labels(uow, dataset, items.round_id)
    per_item = _labels_per_item(uow)
    assert per_item == dict.fromkeys(items.item_ids, 2)  # not one answer bought twice
    assert pulled.waiting == 0 and pulled.new_labels == 20


def test_cancel_withdraws_from_every_annotator_dataset_and_a_new_annotator_tops_up(
    argilla_stack: ArgillaTarget, uow
) -> None:
    workspace = fresh_workspace(argilla_stack)
    first = annotator_in(argilla_stack, workspace, "solo")
    name = unique("ds-topup")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=2)
    items = make_round_items(uow, 4, tag="topup ")

    push_items(uow, dataset, items.round_id)  # one annotator: every item with her, coverage short
    assert set(own_records(argilla_stack, first, name)) == set(items.item_ids)
    second = annotator_in(argilla_stack, workspace, "late")
    assert push_items(uow, dataset, items.round_id).pushed == 4  # the new annotator gets every item
    assert set(own_records(argilla_stack, second, name)) == set(items.item_ids)
    assert set(own_records(argilla_stack, first, name)) == set(items.item_ids)

    answered = items.item_ids[0]
    respond(
        argilla_stack, first, own_records(argilla_stack, first, name)[answered], "submitted", preference="b"
    )
    with uow() as s:
        s.execute(update(Round).where(Round.id == items.round_id).values(status=RoundStatus.CANCELLED))
    withdrawn = withdraw_cancelled(uow, dataset)
    assert withdrawn.withdrawn == 4 and withdrawn.labels == 1  # the answer was stored first
    assert own_records(argilla_stack, first, name) == {} and own_records(argilla_stack, second, name) == {}
    assert set(annotator_datasets(dataset)) == {first.username, second.username}
    assert _labels_per_item(uow) == {answered: 1}
