"""What a round's gold records must not give away (annotation.gold, annotation.gateway), read through the
annotators' own keys: the shared dataset's source_id metadata, gold left waiting after its round stopped
collecting, and gold placed mid-round among items that hold their places already."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from annotation import gold
from annotation.dataset import ensure_dataset
from annotation.gateway import pull_labels, push_items
from storage.models import Prompt, Round
from storage.repositories.gold import gold_answers
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items, prompt_id
from tests.support.argilla_helpers import annotator_in, fresh_workspace, own_records, owner, respond, unique
from tests.support.gold_setup import add_gold, readable

pytestmark = pytest.mark.argilla


def _with_source_ids(uow, items) -> None:
    with uow() as s:
        for text in items.prompts.values():
            s.execute(update(Prompt).where(Prompt.id == prompt_id(text)).values(source_id=f"op-{text[:12]}"))


def test_a_round_with_gold_shows_no_source_id_in_the_shared_dataset(
    argilla_stack: ArgillaTarget, uow
) -> None:
    workspace = fresh_workspace(argilla_stack)
    who = annotator_in(argilla_stack, workspace, "src")
    name = unique("ds-src")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=1)
    add_gold(uow, 2, "src ", source_ids=True)
    with_gold = make_round_items(uow, 3, tag="src ")
    _with_source_ids(uow, with_gold)
    assert push_items(uow, dataset, with_gold.round_id, gold_per_round=2).gold == 2
    seen = readable(argilla_stack, who.api_key, name)
    assert len(seen) == 5 and not any("source_id" in (r.get("metadata") or {}) for r in seen)
    # A round without gold keeps the operator's ids (they find their prompts in Argilla by them).
    plain = make_round_items(uow, 2, round_number=2, tag="src plain ")
    _with_source_ids(uow, plain)
    assert push_items(uow, dataset, plain.round_id, gold_per_round=0).gold == 0
    shown = [r for r in readable(argilla_stack, who.api_key, name) if r["metadata"]["round"] == 2]
    assert len(shown) == 2 and all(r["metadata"]["source_id"].startswith("op-") for r in shown)


def test_unanswered_gold_leaves_the_queue_when_its_round_stops_collecting(
    argilla_stack: ArgillaTarget, uow
) -> None:
    workspace = fresh_workspace(argilla_stack)
    who = annotator_in(argilla_stack, workspace, "idle")
    name = unique("ds-idle")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=1)
    add_gold(uow, 2, "idle ")
    items = make_round_items(uow, 2, tag="idle ", status=RoundStatus.COLLECTING)
    assert push_items(uow, dataset, items.round_id, gold_per_round=2).gold == 2
    mine = own_records(argilla_stack, who, name)
    golds = sorted(set(mine) - set(items.item_ids))
    respond(argilla_stack, who, mine[golds[0]], "submitted", preference="a")  # one gold record answered,
    for item_id in items.item_ids:  # every item too: the round closes normally, nothing of it waits
        respond(argilla_stack, who, mine[item_id], "submitted", preference="a")
    pull_labels(uow, dataset, items.round_id)
    with uow() as s:
        s.execute(update(Round).where(Round.id == items.round_id).values(status=RoundStatus.DONE))
    later = make_round_items(uow, 1, round_number=2, tag="idle later ")
    push_items(uow, dataset, later.round_id)  # every push (and pull) clears what no longer collects
    left = own_records(argilla_stack, who, name)
    assert golds[0] in left and golds[1] not in left  # the answered one stays, as an answered item's does
    with uow() as s:
        assert len(gold_answers(s, round_id=items.round_id)) == 1


@pytest.mark.parametrize("min_submitted", [1, 2], ids=["shared", "blind"])
def test_gold_added_mid_round_waits_for_the_next_round(
    argilla_stack: ArgillaTarget, uow, min_submitted
) -> None:
    workspace = fresh_workspace(argilla_stack)
    people = [annotator_in(argilla_stack, workspace, f"mid{k}") for k in range(2)]
    name = unique("ds-mid")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=min_submitted)
    items = make_round_items(uow, 3, tag=f"mid{min_submitted} ", status=RoundStatus.COLLECTING)
    assert push_items(uow, dataset, items.round_id, gold_per_round=2).gold == 0  # no gold yet
    add_gold(uow, 3, f"mid{min_submitted} ")
    assert push_items(uow, dataset, items.round_id, gold_per_round=2).gold == 0  # a later collecting tick
    for p in people:
        seen = readable(argilla_stack, p.api_key, name)
        assert seen and {r["external_id"] for r in seen} <= set(items.item_ids)
        assert gold.split_gold(uow, seen)[0] == []
        priorities = [r["metadata"]["priority"] for r in seen]
        assert len(set(priorities)) == len(priorities)
    later = make_round_items(uow, 2, round_number=2, tag=f"mid{min_submitted} later ")
    assert push_items(uow, dataset, later.round_id, gold_per_round=2).gold > 0  # the next round takes it
