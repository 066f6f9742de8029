"""Length groups: a batch's rows split into runs of similar length that pad fewer tokens than one call."""

from __future__ import annotations

import itertools

import pytest

from loop.ml.length_groups import length_groups


def _padded(lengths, groups) -> int:
    return sum(len(g) * max(lengths[i] for i in g) for g in groups)


def test_chosen_long_and_rejected_short_go_in_separate_calls() -> None:
    lengths = [90, 88, 95, 91, 20, 22, 19, 25]  # [chosen..., rejected...], as TRL's collator stacks them
    groups = length_groups(lengths, max_groups=4, call_cost=64)
    assert sorted(i for g in groups for i in g) == list(range(8))  # every row once
    assert sorted(map(sorted, groups)) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # a third call would save 12 tokens
    assert _padded(lengths, groups) < 0.65 * len(lengths) * max(lengths)


def test_similar_lengths_stay_one_call() -> None:
    assert length_groups([50, 52, 51, 49], max_groups=4, call_cost=64) == [[3, 0, 2, 1]]


@pytest.mark.parametrize("max_groups", [1, 2, 3])
def test_never_more_runs_than_allowed_and_each_run_is_a_length_range(max_groups: int) -> None:
    lengths = [5, 300, 40, 41, 150, 160, 7, 299]
    groups = length_groups(lengths, max_groups=max_groups, call_cost=0)
    assert 1 <= len(groups) <= max_groups
    spans = [(min(lengths[i] for i in g), max(lengths[i] for i in g)) for g in groups]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_no_rows_no_groups() -> None:
    assert length_groups([]) == []
