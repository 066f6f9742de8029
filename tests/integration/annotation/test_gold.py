"""Gold items in rounds against the real Argilla server: pushed with the round's records (shared dataset and
blind per-annotator datasets), answered by bot annotators, stored aside (storage.repositories.gold), absent
from the items' labels, export and DPO pairs; through each annotator's own key nothing tells a gold record
from an item's; each annotator sees a gold item at most once over two rounds."""

from __future__ import annotations

import json
import re
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select, update

from annotation.dataset import ensure_dataset
from annotation.gateway import pull_labels, push_items, withdraw_cancelled
from annotation.simulated.bot import AnnotatorBot
from annotation.transfer import fetch_records
from annotation.unpulled import AnswerCount, count_answers
from loop.export import export_preferences
from loop.gold import gold_key
from storage.models import GoldRecord, Label, Round
from storage.repositories.gold import add_gold_items, gold_answers, gold_keys
from storage.repositories.items import decided_items
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator_in, fresh_workspace, owner, unique

pytestmark = pytest.mark.argilla
HEX64 = re.compile(r"[0-9a-f]{64}")


def _add_gold(uow, n: int, tag: str) -> dict[int, dict]:
    """n gold items (gold response A is the better one on even k); returns {gold id: row}."""
    rows = []
    for k in range(n):
        prompt = f"{tag}Question 9.{k}: explain topic {k} briefly."  # shaped like the round's prompts
        a, b = f"answer 2 to <{prompt}>", f"answer 0 to <{prompt}>"
        rows.append(
            {
                "key": gold_key(prompt, a, b),
                "prompt": prompt,
                "response_a": a,
                "response_b": b,
                "expected": "a" if k % 2 == 0 else "b",
                "rationale": None,
                "source": "gold.jsonl",
                "source_id": None,
            }
        )
    with uow() as s:
        add_gold_items(s, rows)
    with uow() as s:
        by_key = {v: k for k, v in gold_keys(s).items()}
    return {by_key[r["key"]]: r for r in rows}


def _seen(stack: ArgillaTarget, key: str, name: str) -> list[dict]:
    """Every record of the datasets called `name` that an annotator's key can read, with responses."""
    out: list[dict] = []
    with httpx.Client(base_url=stack.url, headers={"X-Argilla-Api-Key": key}, timeout=60) as http:
        for d in http.get("/api/v1/me/datasets").json()["items"]:
            if d["name"] != name:
                continue
            r = http.post(
                f"/api/v1/me/datasets/{d['id']}/records/search",
                params={"include": "responses", "limit": 1000},
                json={},
            )
            r.raise_for_status()
            out += [i["record"] for i in r.json()["items"]]
            for rec in out:  # the record as GET /records/{id} returns it, too
                g = http.get(f"/api/v1/records/{rec['id']}", params={"include": "responses"})
                assert g.status_code == 200
                rec["_direct"] = g.json()
    return out


def _shape(record: dict) -> tuple:
    """What a record shows about itself beyond its texts: keys, field names and types, metadata names and
    value types, the external id's form, suggestions and vectors."""

    def kinds(d: dict) -> tuple:
        return tuple(sorted((k, type(v).__name__) for k, v in (d or {}).items()))

    direct = record.get("_direct", {})
    return (
        tuple(sorted(k for k in record if k not in ("_direct", "responses"))),
        kinds(record["fields"]),
        tuple(sorted((k, kinds(v)) for k, v in record["fields"].items() if isinstance(v, dict))),
        kinds(record.get("metadata")),
        bool(HEX64.fullmatch(record["external_id"])),
        record.get("status"),
        json.dumps(record.get("suggestions") or []),
        json.dumps(record.get("vectors") or {}),
        tuple(sorted(direct)),
        kinds(direct.get("metadata")),
    )


def _always_a(_prompt: str, _a: str, _b: str) -> str:
    return "a"


def test_gold_in_the_shared_dataset_is_answered_stored_aside_and_never_a_preference(
    argilla_stack: ArgillaTarget, uow, tmp_path
) -> None:
    workspace = fresh_workspace(argilla_stack)
    bot = annotator_in(argilla_stack, workspace, "goldbot")
    name = unique("ds-gold")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=1)
    items = make_round_items(uow, 4, tag="shared ")
    gold = _add_gold(uow, 3, "shared ")

    report = push_items(uow, dataset, items.round_id, order=items.item_ids, gold_per_round=2)
    assert (report.pushed, report.gold) == (4, 2)  # the round's counts leave gold out
    records = fetch_records(dataset, responses=False)
    assert sorted(r["metadata"]["priority"] for r in records) == [1, 2, 3, 4, 5, 6]
    assert {r["metadata"]["round"] for r in records} == {items.round_number}
    assert {r["metadata"]["strategy"] for r in records} == {"pvar"}
    # Pushing again sends nothing and places no more gold.
    again = push_items(uow, dataset, items.round_id, order=items.item_ids, gold_per_round=2)
    assert (again.pushed, again.gold) == (0, 0)
    assert len(fetch_records(dataset, responses=False)) == 6

    seen = _seen(argilla_stack, bot.api_key, name)
    item_shapes = {_shape(r) for r in seen if r["external_id"] in items.item_ids}
    gold_shapes = {_shape(r) for r in seen if r["external_id"] not in items.item_ids}
    assert len(item_shapes) == 1 and gold_shapes == item_shapes

    with AnnotatorBot(argilla_stack.url, bot.api_key, _always_a) as b:
        for dataset_id in b.dataset_ids(name):
            b.run(dataset_id)
    # Not pulled yet: what guards `argilla down` and `annotators remove` counts the gold answers too.
    assert count_answers(uow, dataset) == AnswerCount(6, 6)
    pulled = pull_labels(uow, dataset, items.round_id)
    assert count_answers(uow, dataset) == AnswerCount(6, 0)
    assert (pulled.records, pulled.new_labels, pulled.decided, pulled.gold_answers) == (4, 4, 4, 2)
    assert pulled.skipped == []
    assert pull_labels(uow, dataset, items.round_id).gold_answers == 0  # nothing new

    with uow() as s:
        answers = gold_answers(s, round_id=items.round_id)
        swaps = dict(s.execute(select(GoldRecord.gold_id, GoldRecord.swapped)).all())
        assert s.scalar(select(func.count()).select_from(Label)) == 4  # the items' answers only
        pairs = decided_items(s, [items.round_id])
        out = tmp_path / "prefs.jsonl"
        exported = export_preferences(s, out)
    assert len(answers) == 2 and {a.annotator for a in answers} == {bot.username}
    for a in answers:  # "a" as shown, un-swapped to the gold item's own a/b
        assert a.answer == ("b" if swaps[a.gold_id] else "a") and a.shown_swapped == swaps[a.gold_id]
        assert a.expected == gold[a.gold_id]["expected"] and a.answered_at is not None
    gold_prompts = {g["prompt"] for g in gold.values()}
    assert len(pairs) == 4 and not {p.prompt for p in pairs} & gold_prompts
    text = out.read_text()
    assert exported == 4 and not any(p in text for p in gold_prompts)

    # The next round gets the one gold item nobody was shown; cancelled unanswered, it leaves the queue with
    # the round's items, and the answered round stays.
    later = make_round_items(uow, 2, round_number=2, tag="shared later ")
    assert push_items(uow, dataset, later.round_id, gold_per_round=2).gold == 1
    assert len(fetch_records(dataset, responses=False)) == 9
    with uow() as s:
        s.execute(update(Round).where(Round.id == later.round_id).values(status=RoundStatus.CANCELLED))
    withdraw_cancelled(uow, dataset)
    left = fetch_records(dataset, responses=False)
    assert len(left) == 6 and {r["metadata"]["round"] for r in left} == {items.round_number}
    with uow() as s:
        placed = s.execute(select(GoldRecord.gold_id, GoldRecord.argilla_record_id)).all()
    assert len({g for g, _ in placed}) == 3 and sum(rid is None for _, rid in placed) == 1


def test_blind_gold_looks_like_items_to_each_annotator_and_is_shown_once_over_two_rounds(
    argilla_stack: ArgillaTarget, uow
) -> None:
    workspace = fresh_workspace(argilla_stack)
    people = [annotator_in(argilla_stack, workspace, f"gold{k}") for k in range(3)]
    name = unique("ds-goldblind")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=2)
    gold = _add_gold(uow, 3, "blind ")
    shown: Counter = Counter()  # (annotator, gold id) -> times placed
    for number in (1, 2):
        items = make_round_items(uow, 3, round_number=number, tag=f"blind{number} ")
        report = push_items(uow, dataset, items.round_id, order=items.item_ids, gold_per_round=2)
        assert report.pushed == 3 and report.gold == (6 if number == 1 else 3)  # 3 gold: 2, then the 1 left
        assert push_items(uow, dataset, items.round_id, gold_per_round=2).gold == 0  # placed once
        for p in people:
            seen = [r for r in _seen(argilla_stack, p.api_key, name) if r["metadata"]["round"] == number]
            mine_items = [r for r in seen if r["external_id"] in items.item_ids]
            mine_gold = [r for r in seen if r["external_id"] not in items.item_ids]
            assert mine_items and len(mine_gold) == (2 if number == 1 else 1)
            assert {_shape(r) for r in mine_gold} == {_shape(r) for r in mine_items}
            assert all(set(r["metadata"]) == {"round", "priority"} for r in seen)
            priorities = [r["metadata"]["priority"] for r in seen]
            assert len(set(priorities)) == len(priorities)  # no two records share a place
        for p in people:
            with AnnotatorBot(argilla_stack.url, p.api_key, _always_a) as b:
                for dataset_id in b.dataset_ids(name):
                    b.run(dataset_id)
        pulled = pull_labels(uow, dataset, items.round_id)
        assert (pulled.new_labels, pulled.decided) == (6, 3)
        with uow() as s:
            answers = gold_answers(s, round_id=items.round_id)
        assert len(answers) == (6 if number == 1 else 3)
        for a in answers:
            shown[(a.annotator, a.gold_id)] += 1
    assert set(shown.values()) == {1}  # every annotator saw each gold item at most once
    assert {who for who, _ in shown} == {p.username for p in people}
    assert Counter(who for who, _ in shown) == dict.fromkeys((p.username for p in people), 3)
    for p in people:
        for r in _seen(argilla_stack, p.api_key, name):
            assert {resp["user_id"] for resp in r.get("responses") or []} <= {p.user_id}
    assert set(gold) >= {g for _, g in shown}
