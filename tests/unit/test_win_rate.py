"""Properties of the judge-agnostic win rate and its bootstrap CI."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop.evaluation.win_rate import sample_seeds, win_rate

scores = st.lists(st.integers(min_value=-3, max_value=3), min_size=1, max_size=40)


def test_all_ties_give_one_half_with_ci_containing_one_half():
    result = win_rate([1.0] * 25, [1.0] * 25)
    assert result.value == 0.5
    assert result.ci_low <= 0.5 <= result.ci_high
    assert result.n == 25


def test_all_wins_give_one_and_all_losses_zero():
    wins = win_rate([2.0] * 10, [1.0] * 10)
    assert (wins.value, wins.ci_low, wins.ci_high) == (1.0, 1.0, 1.0)
    losses = win_rate([0.0] * 10, [1.0] * 10)
    assert (losses.value, losses.ci_low, losses.ci_high) == (0.0, 0.0, 0.0)


def test_outcomes_are_win_tie_loss():
    # one win, one tie, one loss -> (1 + 0.5 + 0) / 3
    assert win_rate([2.0, 1.0, 0.0], [1.0, 1.0, 1.0]).value == pytest.approx(0.5)
    assert win_rate([5.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0]).value == pytest.approx(1.5 / 4)


def test_tie_tolerance_turns_close_scores_into_ties():
    assert win_rate([1.05, 2.0], [1.0, 1.0]).value == 1.0
    assert win_rate([1.05, 2.0], [1.0, 1.0], tie_tolerance=0.1).value == 0.75


def test_ci_narrows_with_more_prompts():
    rng = np.random.default_rng(0)
    small_p, small_r = rng.normal(size=20), rng.normal(size=20)
    big_p, big_r = rng.normal(size=2000), rng.normal(size=2000)
    small, big = win_rate(small_p, small_r), win_rate(big_p, big_r)
    assert big.ci_high - big.ci_low < small.ci_high - small.ci_low
    assert big.ci_low <= 0.5 <= big.ci_high  # identically distributed scores


@settings(max_examples=60, deadline=None)
@given(data=st.data(), policy=scores)
def test_ci_contains_value_and_is_deterministic_under_seed(data, policy):
    reference = data.draw(st.lists(st.integers(-3, 3), min_size=len(policy), max_size=len(policy)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    first = win_rate(policy, reference, n_bootstrap=200, seed=seed)
    assert 0.0 <= first.ci_low <= first.value <= first.ci_high <= 1.0
    assert first == win_rate(policy, reference, n_bootstrap=200, seed=seed)
    # Swapping the sides mirrors the point estimate.
    assert win_rate(reference, policy, n_bootstrap=200, seed=seed).value == pytest.approx(1.0 - first.value)


def test_different_seeds_resample_differently():
    rng = np.random.default_rng(1)
    p, r = rng.normal(size=50), rng.normal(size=50)
    results = [win_rate(p, r, seed=seed, n_bootstrap=300) for seed in range(10)]
    assert len({res.value for res in results}) == 1
    assert len({(res.ci_low, res.ci_high) for res in results}) > 1


@pytest.mark.parametrize(
    ("policy", "reference", "match"),
    [
        ([], [], "no scores"),
        ([1.0, 2.0], [1.0], "same shape"),
        ([float("nan")], [1.0], "finite"),
        ([[[1.0]]], [[[1.0]]], "1-D"),
        ([[1.0, 2.0]], [[1.0]], "same shape"),
    ],
)
def test_bad_scores_are_rejected(policy, reference, match):
    with pytest.raises(ValueError, match=match):
        win_rate(policy, reference)


def test_bad_knobs_are_rejected():
    with pytest.raises(ValueError, match="n_bootstrap"):
        win_rate([1.0], [0.0], n_bootstrap=0)
    with pytest.raises(ValueError, match="confidence"):
        win_rate([1.0], [0.0], confidence=1.0)
    with pytest.raises(ValueError, match="tie_tolerance"):
        win_rate([1.0], [0.0], tie_tolerance=-1)


def test_sample_seeds_are_per_side_and_index_and_reproducible():
    policy, reference = sample_seeds(0, "policy", 4), sample_seeds(0, "reference", 4)
    assert policy == sample_seeds(0, "policy", 4)
    assert len(set(policy + reference)) == 8  # independent sides, distinct sample indices
    assert sample_seeds(0, "policy", 2) == policy[:2]  # sample i does not depend on how many are drawn
    assert sample_seeds(1, "policy", 4) != policy
    assert all(0 <= s < 2**63 for s in policy)
    with pytest.raises(ValueError, match="side"):
        sample_seeds(0, "judge", 1)


def test_samples_are_compared_index_by_index_and_averaged_per_prompt():
    # prompt 0: win, loss -> 0.5; prompt 1: win, tie -> 0.75; the bootstrap resamples the 2 prompts
    result = win_rate([[2.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]], n_bootstrap=500)
    assert result.value == pytest.approx(0.625) and result.n == 2
    assert result.ci_low == pytest.approx(0.5) and result.ci_high == pytest.approx(0.75)
