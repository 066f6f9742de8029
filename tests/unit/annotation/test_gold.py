"""Where gold records sit in a round's queue (annotation.gold): seeded places among the items', the same on
every push, and the items' priorities leave exactly those places free; record ids shaped like item ids."""

from __future__ import annotations

import hashlib
import re

from annotation.gateway import _priorities
from annotation.gold import gold_slots, record_id

SECRET = "5e" * 32


def test_gold_slots_are_seeded_places_among_the_rounds_records() -> None:
    slots = gold_slots(seed=3, round_id=7, n_items=10, g=3)
    assert slots == gold_slots(seed=3, round_id=7, n_items=10, g=3)  # every push of the round agrees
    assert len(set(slots)) == 3 and all(1 <= s <= 13 for s in slots) and slots == sorted(slots)
    draws = {tuple(gold_slots(seed=s, round_id=7, n_items=10, g=3)) for s in range(20)}
    assert len(draws) > 10  # not a fixed place (e.g. always last)
    assert gold_slots(seed=3, round_id=7, n_items=10, g=0) == []


def test_items_take_the_places_gold_leaves_free_in_their_order() -> None:
    items = ["i1", "i2", "i3", "i4"]
    reserved = set(gold_slots(seed=1, round_id=1, n_items=4, g=2))
    ranks = _priorities(["i3", "i1"], items, reserved)
    assert sorted([*ranks.values(), *reserved]) == [1, 2, 3, 4, 5, 6]  # one place each, no gaps
    assert [i for i, _ in sorted(ranks.items(), key=lambda x: x[1])] == ["i3", "i1", "i2", "i4"]
    assert _priorities(["i3", "i1"], items) == {"i3": 1, "i1": 2, "i2": 3, "i4": 4}  # no gold: as before


def test_record_ids_look_like_item_ids_and_differ_per_round_and_annotator() -> None:
    ids = {record_id(SECRET, "k", r, who) for r in (1, 2) for who in (None, "alice", "bob")}
    assert len(ids) == 6 and all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)


def test_record_ids_are_stable_for_a_secret_and_depend_on_it() -> None:
    rid = record_id(SECRET, "k", 2, "alice")
    assert rid == record_id(SECRET, "k", 2, "alice") and rid != record_id("ab" * 32, "k", 2, "alice")
    unkeyed = hashlib.sha256(b"gold\0k\02\0alice").hexdigest()  # the formula before the secret
    assert rid != unkeyed
