"""The annotation queue's order: the strategy's ranking first, audit picks at seeded random places."""

from __future__ import annotations

from collections import Counter

import pytest

from loop.rounds.priority import priority_order
from storage.repositories.items import ItemScores


def _items(n: int, audit: set[int] = frozenset()) -> list[ItemScores]:
    # Item ids sort in reverse of their PVar, so an order by id would be the worst order.
    return [ItemScores(f"id-{n - i:03d}", i in audit, pvar=float(i), reward_gap=float(-i)) for i in range(n)]


def test_pvar_round_is_labelled_highest_pvar_first() -> None:
    items = _items(5)
    assert priority_order("pvar", items, seed=0) == ["id-001", "id-002", "id-003", "id-004", "id-005"]
    assert priority_order("low-pvar", items, seed=0) == ["id-005", "id-004", "id-003", "id-002", "id-001"]
    assert priority_order("reward-gap", items, seed=0) == ["id-005", "id-004", "id-003", "id-002", "id-001"]


def test_items_without_scores_come_last_by_id() -> None:
    items = [*_items(3), ItemScores("id-000", False, None, None)]
    assert priority_order("pvar", items, seed=0)[-1] == "id-000"


@pytest.mark.parametrize("strategy", ["random", "random-disagree", "full"])
def test_random_strategies_get_a_seeded_order(strategy: str) -> None:
    items = _items(8)
    first = priority_order(strategy, items, seed=1)
    assert sorted(first) == sorted(i.id for i in items)
    assert priority_order(strategy, items, seed=1) == first
    assert any(priority_order(strategy, items, seed=s) != first for s in range(2, 6))


def test_audit_picks_are_spread_over_the_queue_not_placed_last() -> None:
    """Audit picks keep no tell-tale place: over seeds, each lands on every rank about equally often,
    while the PVar picks keep their relative order."""
    items = _items(10, audit={0, 1})  # the two lowest-PVar items are the audit slice
    audit_ids = {i.id for i in items if i.audit}
    ranks: Counter[int] = Counter()
    for seed in range(2000):
        order = priority_order("pvar", items, seed)
        assert sorted(order) == sorted(i.id for i in items)
        picks = [i for i in order if i not in audit_ids]
        assert picks == [f"id-{k:03d}" for k in range(1, 9)]
        ranks.update(order.index(i) + 1 for i in audit_ids)
    assert set(ranks) == set(range(1, 11))
    # 4000 placements over 10 ranks: 400 expected per rank.
    assert all(300 < ranks[r] < 500 for r in range(1, 11)), ranks
    assert priority_order("pvar", items, 7) == priority_order("pvar", items, 7)
