"""The audit slice's pure pieces: how many of a budget are audit items, and the uniform draw outside the
strategy's picks (loop.acquisition.audit)."""

from collections import Counter

import numpy as np
import pytest

from loop.acquisition.audit import audit_count, draw_audit
from loop.config import SelectionConfig


@pytest.mark.parametrize(
    ("budget", "fraction", "expected"),
    [
        (64, 0.1, 6),  # 6.4 -> 6
        (5, 0.1, 1),  # 0.5 -> 1: half up, not banker's rounding (round(0.5) == 0)
        (15, 0.1, 2),  # 1.5 -> 2
        (25, 0.1, 3),  # 2.5 -> 3 (round() would give 2)
        (4, 0.1, 0),
        (64, 0.0, 0),  # 0 disables
        (0, 0.5, 0),
        (1, 0.9, 0),  # the strategy keeps at least one pick
        (10, 0.99, 9),
    ],
)
def test_audit_count_rounds_half_up(budget, fraction, expected):
    assert audit_count(budget, fraction) == expected


@pytest.mark.parametrize("fraction", [1.0, -0.01])
def test_audit_count_rejects_fractions_outside_0_1(fraction):
    with pytest.raises(ValueError, match="audit fraction"):
        audit_count(10, fraction)


def test_default_audit_fraction_is_a_tenth():
    assert SelectionConfig().audit_fraction == 0.1


def test_draw_never_takes_a_picked_index_and_is_seeded():
    picked = np.array([0, 3, 5])
    for seed in range(50):
        got = draw_audit(10, picked, 4, np.random.default_rng(seed))
        assert got.dtype == np.int64 and len(set(got.tolist())) == 4
        assert not set(got.tolist()) & {0, 3, 5} and set(got.tolist()) <= set(range(10))
    same = [draw_audit(10, picked, 4, np.random.default_rng(7)).tolist() for _ in range(2)]
    assert same[0] == same[1]
    assert len({tuple(draw_audit(10, picked, 4, np.random.default_rng(s))) for s in range(10)}) > 1


def test_draw_is_uniform_over_the_unpicked():
    rng = np.random.default_rng(0)
    counts = Counter(int(i) for _ in range(6000) for i in draw_audit(6, np.array([2]), 1, rng))
    assert set(counts) == {0, 1, 3, 4, 5}
    assert all(abs(c - 1200) < 150 for c in counts.values()), counts  # 5 equally likely, sd ~31


def test_draw_takes_what_is_left_and_zero_is_empty():
    assert sorted(draw_audit(5, np.array([0, 1, 2]), 9, np.random.default_rng(0)).tolist()) == [3, 4]
    assert draw_audit(5, np.array([0, 1]), 0, np.random.default_rng(0)).size == 0
    assert draw_audit(2, np.array([0, 1]), 3, np.random.default_rng(0)).size == 0
