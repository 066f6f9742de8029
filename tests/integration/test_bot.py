"""The annotator bot against the real Argilla server: it empties its own queue, pull stores its answers."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from annotation.dataset import ensure_dataset
from annotation.gateway import pull_labels, push_items
from annotation.records import flip
from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import LookupJudge, RewardJudge
from storage.models import AnnotationItem, Label
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator, owner, unique

pytestmark = pytest.mark.argilla


def test_bot_labels_every_pending_record_and_pull_stores_them(argilla_stack: ArgillaTarget, uow) -> None:
    items = make_round_items(uow, 12)
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-bot"), argilla_stack.workspace)
    push_items(uow, dataset, items.round_id, batch_size=5)
    # A reward function that knows the stored rewards: generation_a is always the better one.
    reward = {items.best[i]: 1.0 for i in items.item_ids} | {items.worst[i]: 0.0 for i in items.item_ids}
    judge = RewardJudge(lambda _prompt, response: reward[response], seed=3, temperature=0.5)
    who = annotator(argilla_stack, "bot")

    with AnnotatorBot(argilla_stack.url, who.api_key, judge) as bot:
        assert (bot.username, bot.role) == (who.username, "annotator")
        queue = bot.pending(dataset.id, limit=100)
        assert len(queue) == 12
        # Annotators see the round and the priority, nothing else: rewards and swap flags stay hidden.
        assert all(set(r.get("metadata") or {}) == {"round", "priority"} for r in queue)
        assert [r["metadata"]["priority"] for r in queue] == list(
            range(1, 13)
        )  # its queue, in priority order
        report = bot.run(dataset.id, batch_size=5)
        assert report.submitted == 12 and report.errors == []
        assert bot.pending(dataset.id) == []
        assert bot.run(dataset.id).submitted == 0  # nothing left: a second run is a no-op

    pulled = pull_labels(uow, dataset, items.round_id)
    assert (pulled.new_labels, pulled.decided, pulled.skipped) == (12, 12, [])
    with uow() as s:
        labels = {lb.item_id: (lb.annotator, lb.choice) for lb in s.scalars(select(Label))}
        decisions = {i.id: i.decision for i in s.scalars(select(AnnotationItem))}
    expected = {}
    for i in items.item_ids:
        shown = (items.worst[i], items.best[i]) if items.swapped[i] else (items.best[i], items.worst[i])
        expected[i] = (who.username, flip(judge(items.prompts[i], *shown), items.swapped[i]))
    assert labels == expected
    assert decisions == {i: c for i, (_, c) in expected.items()}


def test_lookup_bot_replays_known_decisions_through_the_swap(argilla_stack: ArgillaTarget, uow) -> None:
    items = make_round_items(uow, 6)
    ids = items.item_ids
    # Known decisions in OUR terms (first = the better-reward response): a, b, tie, discard, a, b.
    ours = dict(zip(ids, ["a", "b", "tie", "discard", "a", "b"], strict=True))
    judge = LookupJudge({(items.prompts[i], items.best[i], items.worst[i]): ours[i] for i in ids})
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-lookup"), argilla_stack.workspace)
    push_items(uow, dataset, items.round_id)
    who = annotator(argilla_stack, "lookup")
    with AnnotatorBot(argilla_stack.url, who.api_key, judge) as bot:
        report = bot.run(dataset.id, batch_size=4)
    assert report.submitted == 6 and sum(report.answers.values()) == 6

    pulled = pull_labels(uow, dataset, items.round_id)
    assert pulled.new_labels == 6
    with uow() as s:
        stored = {lb.item_id: lb.choice for lb in s.scalars(select(Label))}
    assert stored == ours  # whatever side Argilla showed each response on

    # The discarded record is discarded in Argilla too.
    rid = _record_ids(uow)[ids[3]]
    record = httpx.get(
        f"{argilla_stack.url}/api/v1/records/{rid}",
        params={"include": "responses"},
        headers=argilla_stack.headers,
    ).json()
    assert [r["status"] for r in record["responses"]] == ["discarded"]


def _record_ids(uow) -> dict[str, str]:
    with uow() as s:
        return {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}


def test_bot_skips_a_dataset_still_being_created(argilla_stack: ArgillaTarget) -> None:
    """A dataset is listed as a draft before its metadata properties exist; searching it sorted by priority
    is then a 422 (the quick demo's bot once failed on it): the bot labels published datasets only."""
    name = unique("ds-draft")
    r = httpx.post(
        f"{argilla_stack.url}/api/v1/datasets",
        json={"name": name, "workspace_id": _workspace_id(argilla_stack)},
        headers=argilla_stack.headers,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "draft"
    who = annotator(argilla_stack, "drafty")
    with AnnotatorBot(argilla_stack.url, who.api_key, RewardJudge(lambda _p, r: float(len(r)))) as bot:
        assert bot.dataset_ids(name) == []


def _workspace_id(stack: ArgillaTarget) -> str:
    r = httpx.get(f"{stack.url}/api/v1/me/workspaces", headers=stack.headers, timeout=60)
    return next(w["id"] for w in r.json()["items"] if w["name"] == stack.workspace)
