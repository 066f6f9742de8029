"""Properties of PVar and reward gap (loop.acquisition.pvar), checked against a brute-force ordered-pair reference."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from loop.acquisition.pvar import preference_variance, reward_gap

PROPERTY = settings(max_examples=60, deadline=None)

moderate = st.floats(min_value=-100.0, max_value=100.0, allow_nan=False)
any_finite = st.floats(allow_nan=False, allow_infinity=False)


def rows(elements=moderate, min_k: int = 2, max_k: int = 8):
    return st.lists(elements, min_size=min_k, max_size=max_k)


def ragged(elements=moderate, max_prompts: int = 12):
    return st.lists(rows(elements), min_size=1, max_size=max_prompts)


def sigmoid(d: float) -> float:
    if d >= 0:
        return 1.0 / (1.0 + math.exp(-d))
    e = math.exp(d)
    return e / (1.0 + e)


def brute_pvar(row: list[float]) -> float:
    """The definition, literally: mean over ordered pairs i != j of (sigmoid(r_i - r_j) - 0.5)^2."""
    terms = [(sigmoid(a - b) - 0.5) ** 2 for i, a in enumerate(row) for j, b in enumerate(row) if i != j]
    return sum(terms) / len(terms)


# --- PVar ---------------------------------------------------------------------------------------------


@PROPERTY
@given(ragged(st.floats(min_value=-1e6, max_value=1e6)))
def test_matches_brute_force_reference(prompts):
    got = preference_variance(prompts)
    want = np.array([brute_pvar(r) for r in prompts])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@PROPERTY
@given(ragged(any_finite))
def test_bounded_even_at_float64_extremes(prompts):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow in r_i - r_j must be handled, not warned about
        got = preference_variance(prompts)
    assert got.dtype == np.float64 and got.shape == (len(prompts),)
    assert np.all((got >= 0.0) & (got <= 0.25))


@PROPERTY
@given(ragged(st.floats(min_value=-15.0, max_value=15.0)))
def test_strictly_below_quarter_before_saturation(prompts):
    # Gaps <= 30 keep tanh(gap / 2) < 1 in float64, so the 0.25 supremum is not reached.
    assert np.all(preference_variance(prompts) < 0.25)


def test_saturates_to_quarter_for_huge_gaps():
    got = preference_variance([[0.0, 1e6], [-1.7e308, 1.7e308], [0.0, 40.0]])
    np.testing.assert_array_equal(got, [0.25, 0.25, 0.25])
    # Three equal-spaced huge gaps: every ordered pair is saturated.
    assert preference_variance([[0.0, 1e4, 2e4]])[0] == 0.25


@PROPERTY
@given(st.floats(-1e300, 1e300), st.integers(2, 10))
def test_zero_when_all_rewards_equal(value, k):
    assert preference_variance([[value] * k])[0] == 0.0


@PROPERTY
@given(rows())
def test_positive_when_rewards_differ(row):
    gap = max(row) - min(row)
    assume(gap > 1e-150)  # smaller gaps underflow to 0 when squared (documented)
    assert preference_variance([row])[0] > 0.0


@PROPERTY
@given(rows(), st.floats(min_value=-100.0, max_value=100.0))
def test_shift_invariant(row, shift):
    shifted = [r + shift for r in row]
    np.testing.assert_allclose(preference_variance([shifted]), preference_variance([row]), rtol=0, atol=1e-12)


@PROPERTY
@given(st.data())
def test_permutation_invariant(data):
    row = data.draw(rows(st.floats(-1e4, 1e4)))
    perm = data.draw(st.permutations(row))
    np.testing.assert_allclose(preference_variance([perm]), preference_variance([row]), rtol=1e-12, atol=0)


@PROPERTY
@given(st.floats(-50.0, 50.0), st.floats(-50.0, 50.0))
def test_two_responses_closed_form(r1, r2):
    want = (sigmoid(r1 - r2) - 0.5) ** 2
    assert preference_variance([[r1, r2]])[0] == pytest.approx(want, rel=0, abs=1e-12)


@PROPERTY
@given(st.lists(st.integers(-1000, 1000), min_size=2, max_size=8))
def test_small_gaps_approximate_var_over_eight(ints):
    assume(len(set(ints)) > 1)
    row = np.array(ints, dtype=np.float64) * 1e-7  # gaps <= 2e-4: relative error of Var/8 ~ gap^2 / 6
    assert preference_variance([row])[0] == pytest.approx(np.var(row, ddof=1) / 8, rel=1e-6)


@PROPERTY
@given(ragged())
def test_ragged_equals_per_prompt(prompts):
    together = preference_variance(prompts)
    alone = np.array([preference_variance([r])[0] for r in prompts])
    np.testing.assert_allclose(together, alone, rtol=1e-13, atol=0)


@PROPERTY
@given(st.integers(1, 10), st.integers(2, 6), st.data())
def test_array_and_list_inputs_agree(n, k, data):
    block = np.array(data.draw(st.lists(rows(min_k=k, max_k=k), min_size=n, max_size=n)))
    from_array = preference_variance(block)
    np.testing.assert_array_equal(from_array, preference_variance(block.tolist()))
    np.testing.assert_array_equal(from_array, preference_variance(list(block)))
    np.testing.assert_array_equal(preference_variance(block.astype(np.float32)).dtype, np.float64)


@PROPERTY
@given(rows(st.floats(-20.0, 20.0)))
def test_bracketed_by_the_largest_pair(row):
    # Every ordered pair has |d| <= gap and the max pair appears twice among K(K-1) ordered pairs.
    k = len(row)
    top = (math.tanh((max(row) - min(row)) / 2) / 2) ** 2
    got = preference_variance([row])[0]
    assert top * 2 / (k * (k - 1)) * (1 - 1e-12) <= got <= top * (1 + 1e-12)


def test_large_k_is_computed_in_chunks_correctly():
    # K = 1500 makes each prompt its own K*K block, exercising the chunked path.
    rng = np.random.default_rng(7)
    block = rng.normal(scale=2.0, size=(3, 1500))
    d = block[:, :, None] - block[:, None, :]
    terms = (1.0 / (1.0 + np.exp(-d)) - 0.5) ** 2
    k = block.shape[1]
    want = terms.sum(axis=(1, 2)) / (k * (k - 1))
    np.testing.assert_allclose(preference_variance(block), want, rtol=1e-10)


def test_known_values():
    # sigmoid(1) - 0.5 = 0.2310585786...; for [0, 1] both ordered pairs give the same square.
    assert preference_variance([[0.0, 1.0]])[0] == pytest.approx(0.2310585786300049**2, abs=1e-15)


def test_empty_inputs_give_empty_results():
    for empty in ([], np.empty((0, 5))):
        for fn in (preference_variance, reward_gap):
            out = fn(empty)
            assert out.shape == (0,) and out.dtype == np.float64


# --- reward gap ---------------------------------------------------------------------------------------


@PROPERTY
@given(ragged(st.floats(-1e6, 1e6)))
def test_gap_is_max_minus_min(prompts):
    got = reward_gap(prompts)
    np.testing.assert_array_equal(got, [max(r) - min(r) for r in prompts])
    assert np.all(got >= 0)


@PROPERTY
@given(rows())
def test_gap_zero_iff_all_equal(row):
    assert (reward_gap([row])[0] == 0.0) == (len(set(row)) == 1)


@PROPERTY
@given(st.data())
def test_gap_permutation_and_shift_invariant(data):
    row = data.draw(rows())
    shift = data.draw(st.floats(-100.0, 100.0))
    perm = data.draw(st.permutations(row))
    assert reward_gap([perm])[0] == reward_gap([row])[0]
    assert reward_gap([[r + shift for r in row]])[0] == pytest.approx(reward_gap([row])[0], abs=1e-12)


def test_gap_overflow_is_inf_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reward_gap([[-1.7e308, 1.7e308]])[0] == np.inf


# --- validation (shared by both functions) ------------------------------------------------------------

both = pytest.mark.parametrize("fn", [preference_variance, reward_gap], ids=["pvar", "gap"])


@both
@pytest.mark.parametrize(
    ("rewards", "message"),
    [
        ([[1.0, 2.0], [3.0]], r"^prompt 1: needs at least 2 rewards to compare, got 1$"),
        ([[1.0, 2.0], [], [0.0, 1.0]], r"^prompt 1: needs at least 2 rewards to compare, got 0$"),
        (np.ones((4, 1)), r"^prompt 0: needs at least 2 rewards.*\(and 3 more bad prompt\(s\)\)$"),
        ([[1.0, 2.0], [0.0, 1.0, math.nan]], r"^prompt 1: reward 2 is NaN"),
        (np.array([[0.0, 1.0], [0.0, 1.0], [math.inf, 0.0]]), r"^prompt 2: reward 0 is infinite"),
        ([[0.0, -math.inf]], r"^prompt 0: reward 1 is infinite"),
        # The lowest bad index is reported even when it sits in a later K-group.
        ([[0.0, 1.0, math.nan], [1.0]], r"^prompt 0: reward 2 is NaN.*1 more"),
        ([[0.0, 1.0], ["a", "b"]], r"^prompt 1: rewards must be real numbers"),
        ([[0.0, 1.0], [[0.0, 1.0]]], r"^prompt 1: rewards must be a 1-D array"),
        ([[0.0, 1.0], 3.0], r"^prompt 1: rewards must be a 1-D array"),
        (np.array([0.0, 1.0]), r"2-D array.*got a 1-D array"),
        (np.zeros((2, 2, 2)), r"got a 3-D array"),
        (np.array([["a", "b"]]), r"must be real numbers"),
        ("01", r"sequence of 1-D arrays, got str"),
        (5, r"sequence of 1-D arrays"),
    ],
)
def test_bad_input_names_the_prompt(fn, rewards, message):
    with pytest.raises(ValueError, match=message):
        fn(rewards)


@both
@PROPERTY
@given(ragged(), st.data(), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_any_single_non_finite_reward_is_reported_at_its_prompt(fn, prompts, data, bad):
    i = data.draw(st.integers(0, len(prompts) - 1))
    j = data.draw(st.integers(0, len(prompts[i]) - 1))
    prompts[i][j] = bad
    with pytest.raises(ValueError, match=rf"^prompt {i}: reward {j} is (NaN|infinite)"):
        fn(prompts)


def test_input_is_not_modified():
    block = np.array([[3.0, 1.0, 2.0]])
    ragged_in = [np.array([2.0, 1.0]), np.array([0.0, 5.0, 1.0])]
    preference_variance(block)
    reward_gap(ragged_in)
    np.testing.assert_array_equal(block, [[3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(ragged_in[1], [0.0, 5.0, 1.0])
