"""Blind overlap's assignment (annotation.blind.assign): coverage, balance, determinism, top-ups."""

from __future__ import annotations

from collections import Counter

from annotation.blind import assign

ITEMS = [f"item-{i:02d}" for i in range(30)]
PEOPLE = ["ana", "bo", "cy", "di"]


def _holders(plan: dict[str, list[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for who, items in plan.items():
        for item in items:
            out.setdefault(item, set()).add(who)
    return out


def test_each_item_goes_to_k_distinct_annotators_balanced() -> None:
    plan = assign(ITEMS, {}, PEOPLE, 2, "round 1")
    holders = _holders(plan)
    assert all(len(holders[i]) == 2 for i in ITEMS)
    loads = Counter({who: len(items) for who, items in plan.items()})
    assert max(loads.values()) - min(loads.values()) <= 1 and sum(loads.values()) == 60
    # In priority order: each annotator's own queue keeps the round's order.
    assert all(items == sorted(items, key=ITEMS.index) for items in plan.values())


def test_same_inputs_same_assignment_and_the_round_changes_it() -> None:
    assert assign(ITEMS, {}, PEOPLE, 2, "round 1") == assign(ITEMS, {}, PEOPLE, 2, "round 1")
    assert assign(ITEMS, {}, PEOPLE, 2, "round 1") != assign(ITEMS, {}, PEOPLE, 2, "round 2")


def test_placed_items_are_kept_and_a_new_annotator_tops_up_short_coverage() -> None:
    # Round started with one annotator and min_submitted 2: each item held once, coverage short.
    first = assign(ITEMS, {}, ["ana"], 2, "r")
    assert first == {"ana": ITEMS}
    holders = _holders(first)
    assert assign(ITEMS, holders, ["ana"], 2, "r") == {}  # nothing more to do with the same roster
    top_up = assign(ITEMS, holders, ["ana", "bo"], 2, "r")
    assert top_up == {"bo": ITEMS}  # bo gets every item, ana nothing twice


def test_an_annotator_gone_from_the_roster_no_longer_counts() -> None:
    holders = _holders(assign(ITEMS[:4], {}, ["ana", "bo"], 2, "r"))
    plan = assign(ITEMS[:4], holders, ["ana", "cy"], 2, "r")
    assert plan == {"cy": ITEMS[:4]}


def test_a_removed_annotators_stored_answer_still_covers_the_item() -> None:
    holders = {"item-00": {"ana", "bo"}, "item-01": {"ana", "bo"}}
    answered = {"item-00": {"bo"}}  # bo answered item-00, then left; item-01 he never answered
    plan = assign(ITEMS[:2], holders, ["ana", "cy"], 2, "r", answered)
    assert plan == {"cy": ["item-01"]}
