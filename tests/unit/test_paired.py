"""Paired statistics over per-prompt judge scores and the label-efficiency curve, on known answers."""

import numpy as np
import pytest

from loop.evaluation.efficiency import labels_to_reach, labels_to_reach_interval
from loop.evaluation.paired import (
    EvaluationDataError,
    Interval,
    eval_prompts_needed,
    mean_interval,
    paired_difference,
    sd_from_half_width,
)
from storage.errors import PvarLoopError


def _scores(values, prefix="p"):
    return {f"{prefix}{i}": float(v) for i, v in enumerate(values)}


def test_constant_difference_gives_a_zero_width_interval():
    rng = np.random.default_rng(0)
    b = _scores(rng.normal(size=30))
    a = {p: v + 0.25 for p, v in b.items()}
    result = paired_difference(a, b)
    assert result == Interval(
        mean=pytest.approx(0.25), low=pytest.approx(0.25), high=pytest.approx(0.25), n=30
    )


def test_only_common_prompts_are_paired():
    a = {"x": 1.0, "y": 0.0, "only-a": 100.0}
    b = {"x": 0.0, "y": 0.0, "only-b": -100.0}
    result = paired_difference(a, b, n_boot=500)
    assert result.n == 2 and result.mean == pytest.approx(0.5)
    assert 0.0 <= result.low <= 0.5 <= result.high <= 1.0


def test_no_common_prompts_is_a_named_error():
    with pytest.raises(EvaluationDataError, match="share no prompt id") as info:
        paired_difference({"a": 1.0}, {"b": 1.0})
    assert isinstance(info.value, PvarLoopError)


def test_pairing_removes_prompt_difficulty():
    """Prompt difficulty varies a lot, the effect is small and steady: the paired interval excludes 0 while
    the interval of either arm's mean is wider than the effect."""
    rng = np.random.default_rng(1)
    difficulty = rng.normal(scale=1.0, size=80)
    b = _scores(difficulty)
    a = _scores(difficulty + 0.1 + rng.normal(scale=0.05, size=80))
    paired = paired_difference(a, b)
    assert paired.low > 0.05 and paired.high < 0.15
    alone = mean_interval(list(b.values()))
    assert alone.high - alone.low > 0.2


def test_interval_is_deterministic_under_seed_and_contains_the_mean():
    rng = np.random.default_rng(2)
    a, b = _scores(rng.normal(size=40)), _scores(rng.normal(size=40))
    first = paired_difference(a, b, seed=5)
    assert first == paired_difference(a, b, seed=5)
    assert first.low <= first.mean <= first.high
    assert paired_difference(a, b, seed=6) != first
    wide, narrow = paired_difference(a, b, level=0.99), paired_difference(a, b, level=0.5)
    assert wide.high - wide.low > narrow.high - narrow.low


@pytest.mark.parametrize(("kwargs", "match"), [({"n_boot": 0}, "n_boot"), ({"level": 1.0}, "level")])
def test_bad_knobs_are_named(kwargs, match):
    with pytest.raises(EvaluationDataError, match=match):
        paired_difference({"x": 1.0}, {"x": 0.0}, **kwargs)


def test_power_helper_reproduces_the_demo_world_numbers():
    """80 prompts x 4 samples gave +-0.057 paired: +-0.04 needs ~163 prompts and +-0.03 ~289."""
    sd = sd_from_half_width(0.057, 80)
    assert sd == pytest.approx(0.26, abs=0.005)
    assert eval_prompts_needed(sd, 0.057) == 80
    assert eval_prompts_needed(sd, 0.04) == 163
    assert eval_prompts_needed(sd, 0.03) == 289
    assert eval_prompts_needed(0.0, 0.01) == 1
    with pytest.raises(EvaluationDataError, match="half_width"):
        eval_prompts_needed(0.2, 0.0)


# --- label efficiency -------------------------------------------------------------------------------


def test_interpolation_between_two_points_is_exact():
    assert labels_to_reach([(0, 0.2), (64, 0.4)], 0.3) == pytest.approx(32.0)
    assert labels_to_reach([(0, 0.2), (64, 0.4), (128, 0.5)], 0.45) == pytest.approx(96.0)


def test_first_crossing_counts_and_the_start_may_already_reach():
    curve = [(0, 0.1), (10, 0.5), (20, 0.2), (30, 0.6)]
    assert labels_to_reach(curve, 0.3) == pytest.approx(5.0)
    assert labels_to_reach(curve, 0.05) == 0.0
    assert labels_to_reach(curve, 0.5) == 10.0


def test_a_curve_that_never_reaches_gives_none():
    assert labels_to_reach([(0, 0.1), (64, 0.2)], 0.3) is None


def test_bad_curves_are_named():
    with pytest.raises(EvaluationDataError, match="no points"):
        labels_to_reach([], 0.1)
    with pytest.raises(EvaluationDataError, match="ascending"):
        labels_to_reach([(10, 0.1), (5, 0.2)], 0.1)


def test_interval_over_replicates_with_unreached_ones():
    curves = [[(0, 0.0), (100, 1.0)]] * 10
    targets = [0.1 * i for i in range(1, 11)]  # 10..100 labels
    low, high, share = labels_to_reach_interval(curves, targets, level=0.8)
    assert (low, high, share) == (pytest.approx(10.0), pytest.approx(100.0), 1.0)
    never = [[(0, 0.0), (100, 0.5)]] * 10
    low, high, share = labels_to_reach_interval(never, targets, level=0.8)
    assert share == 0.5 and low == pytest.approx(20.0) and high is None  # 0.1 is reached at 20
    low, high, share = labels_to_reach_interval(never, [0.9] * 10)
    assert (low, high, share) == (None, None, 0.0)
    with pytest.raises(EvaluationDataError, match="2 curves but 1 targets"):
        labels_to_reach_interval(curves[:2], targets[:1])
