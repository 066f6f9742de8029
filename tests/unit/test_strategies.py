"""Selection strategies: one shared contract for every registered strategy, then each arm's own promise."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop.acquisition.pvar import preference_variance, reward_gap
from loop.acquisition.strategies import STRATEGIES, CandidateScores, select, top_k

PROPERTY = settings(max_examples=50, deadline=None)
ALL = sorted(STRATEGIES)
RANKED = [name for name in ALL if STRATEGIES[name].uses_k]


def pool(n: int, seed: int = 0, tied: bool = False) -> CandidateScores:
    """n candidates with string ids; scores rounded so that ties occur, or all tied."""
    rng = np.random.default_rng(seed)
    if tied:
        pvar, gap = np.full(n, 0.1), np.full(n, 2.0)
    else:
        pvar = np.round(rng.uniform(0.0, 0.25, n), 2)
        gap = np.round(rng.uniform(0.0, 10.0, n), 0)
    return CandidateScores(np.array([f"p{i:03d}" for i in range(n)]), pvar, gap)


# --- the shared contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [0, 1, 7, 40])
@pytest.mark.parametrize("k", [0, 1, 3, 7, 40, 100])
def test_contract_shape_uniqueness_and_k_bounds(name, n, k):
    picked = select(name, pool(n), k, np.random.default_rng(0))
    assert picked.ndim == 1 and picked.dtype == np.int64
    expected = min(k, n) if STRATEGIES[name].uses_k else n  # k > pool: the whole pool
    assert picked.size == expected
    assert np.unique(picked).size == picked.size
    assert np.all((picked >= 0) & (picked < n))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tied", [False, True])
def test_contract_same_seed_same_result(name, tied):
    candidates = pool(30, tied=tied)
    first = select(name, candidates, 5, np.random.default_rng(123))
    again = select(name, candidates, 5, np.random.default_rng(123))
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("name", ALL)
def test_contract_seed_matters_only_where_a_choice_is_random(name):
    # With every score tied, each ranked arm must let the generator decide; "full" has nothing to decide.
    candidates = pool(30, tied=True)
    results = {tuple(select(name, candidates, 5, np.random.default_rng(seed))) for seed in range(8)}
    assert (len(results) > 1) == STRATEGIES[name].uses_k


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("k", [-1, 1.5, 2.0, np.float64(2), "3", None, True])
def test_contract_bad_k_is_rejected(name, k):
    with pytest.raises(ValueError, match="k must be a non-negative int"):
        select(name, pool(5), k, np.random.default_rng(0))


@pytest.mark.parametrize("name", ALL)
def test_contract_numpy_int_k_is_accepted(name):
    assert select(name, pool(5), np.int64(2), np.random.default_rng(0)).size in (2, 5)


@pytest.mark.parametrize("name", ALL)
def test_contract_rng_must_be_a_generator(name):
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        select(name, pool(5), 2, np.random.RandomState(0))


@pytest.mark.parametrize("name", ALL)
def test_contract_does_not_change_candidates(name):
    candidates = pool(12)
    before = (candidates.prompt_ids.copy(), candidates.pvar.copy(), candidates.reward_gap.copy())
    select(name, candidates, 4, np.random.default_rng(0))
    for kept, now in zip(
        before, (candidates.prompt_ids, candidates.pvar, candidates.reward_gap), strict=True
    ):
        np.testing.assert_array_equal(kept, now)


def test_unknown_strategy_lists_the_allowed_names():
    with pytest.raises(ValueError, match="unknown strategy 'uncertainty'") as info:
        select("uncertainty", pool(3), 1, np.random.default_rng(0))
    for name in ("pvar", "low-pvar", "reward-gap", "random", "full"):
        assert name in str(info.value)


def test_registry_holds_the_paper_arms():
    assert set(STRATEGIES) == {"pvar", "low-pvar", "reward-gap", "random", "random-disagree", "full"}
    assert all(s.name == key and s.description for key, s in STRATEGIES.items())


# --- ties ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pvar", "gap"),
    [
        ("pvar", [0.2, 0.1, 0.1, 0.1, 0.0], [0.0] * 5),
        ("low-pvar", [0.0, 0.1, 0.1, 0.1, 0.2], [0.0] * 5),
        ("reward-gap", [0.0] * 5, [5.0, 1.0, 1.0, 1.0, 0.0]),
    ],
)
def test_ties_at_the_cut_are_broken_uniformly(name, pvar, gap):
    candidates = CandidateScores(np.arange(5), pvar, gap)
    second = Counter()
    for seed in range(300):
        picked = select(name, candidates, 2, np.random.default_rng(seed))
        assert picked[0] == 0  # the strict winner always comes first
        second[int(picked[1])] += 1
    assert set(second) == {1, 2, 3}
    # Expected 100 each (sd ~8): a position-biased tie-break would sit far outside this band.
    assert all(60 <= count <= 140 for count in second.values()), second


# --- per-strategy promises ----------------------------------------------------------------------------

scores = st.floats(min_value=0.0, max_value=0.25)
gaps = st.floats(min_value=0.0, max_value=50.0)


@st.composite
def candidate_pools(draw):
    n = draw(st.integers(1, 30))
    pvar = draw(st.lists(scores, min_size=n, max_size=n))
    gap = draw(st.lists(gaps, min_size=n, max_size=n))
    return (
        CandidateScores(np.arange(n) * 10, pvar, gap),
        draw(st.integers(0, n + 2)),
        draw(st.integers(0, 99)),
    )


def _split(values: np.ndarray, picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rest = np.setdiff1d(np.arange(values.size), picked)
    return values[picked], values[rest]


@PROPERTY
@given(candidate_pools())
def test_pvar_picks_the_highest_best_first(args):
    candidates, k, seed = args
    chosen, rest = _split(candidates.pvar, select("pvar", candidates, k, np.random.default_rng(seed)))
    assert np.all(np.diff(chosen) <= 0)
    if chosen.size and rest.size:
        assert chosen.min() >= rest.max()


@PROPERTY
@given(candidate_pools())
def test_low_pvar_picks_the_lowest_best_first(args):
    candidates, k, seed = args
    chosen, rest = _split(candidates.pvar, select("low-pvar", candidates, k, np.random.default_rng(seed)))
    assert np.all(np.diff(chosen) >= 0)
    if chosen.size and rest.size:
        assert chosen.max() <= rest.min()


@PROPERTY
@given(candidate_pools())
def test_reward_gap_picks_the_largest_gap_best_first(args):
    candidates, k, seed = args
    picked = select("reward-gap", candidates, k, np.random.default_rng(seed))
    chosen, rest = _split(candidates.reward_gap, picked)
    assert np.all(np.diff(chosen) <= 0)
    if chosen.size and rest.size:
        assert chosen.min() >= rest.max()


@PROPERTY
@given(candidate_pools())
def test_full_returns_every_candidate_in_pool_order(args):
    candidates, k, seed = args
    np.testing.assert_array_equal(
        select("full", candidates, k, np.random.default_rng(seed)), np.arange(len(candidates))
    )


def test_random_ignores_scores_and_is_uniform():
    a, b = pool(10, seed=1), pool(10, seed=2)
    np.testing.assert_array_equal(
        select("random", a, 3, np.random.default_rng(5)), select("random", b, 3, np.random.default_rng(5))
    )
    counts = Counter()
    for seed in range(400):
        counts.update(select("random", a, 3, np.random.default_rng(seed)).tolist())
    # Expected 120 per candidate (sd ~9).
    assert set(counts) == set(range(10))
    assert all(80 <= c <= 160 for c in counts.values()), counts


def test_indices_map_back_to_prompt_ids():
    candidates = CandidateScores.from_rewards(["a", "b", "c"], [[0.0, 0.1], [0.0, 3.0, -2.0], [1.0, 1.0]])
    top = select("pvar", candidates, 1, np.random.default_rng(0))
    assert candidates.prompt_ids[top].tolist() == ["b"]
    bottom = select("low-pvar", candidates, 1, np.random.default_rng(0))
    assert candidates.prompt_ids[bottom].tolist() == ["c"]


def test_top_k_rejects_nan_scores():
    with pytest.raises(ValueError, match="NaN at index 1"):
        top_k(np.array([0.1, np.nan]), 1, np.random.default_rng(0))


# --- CandidateScores ----------------------------------------------------------------------------------


def test_from_rewards_uses_the_pvar_module():
    rewards = [[0.0, 1.0, 2.0], [0.5, -0.5]]
    c = CandidateScores.from_rewards(["x", "y"], rewards)
    np.testing.assert_array_equal(c.pvar, preference_variance(rewards))
    np.testing.assert_array_equal(c.reward_gap, reward_gap(rewards))
    assert len(c) == 2


@pytest.mark.parametrize(
    ("ids", "pvar", "gap", "message"),
    [
        (["a", "b"], [0.1], [1.0, 2.0], "differ in length"),
        (["a", "a"], [0.1, 0.2], [1.0, 2.0], "duplicates, e.g. 'a'"),
        (["a", "b"], [0.1, np.nan], [1.0, 2.0], r"pvar\[1\] \(prompt 'b'\) = nan is not in \[0, 0.25\]"),
        (["a", "b"], [0.3, 0.1], [1.0, 2.0], r"pvar\[0\] \(prompt 'a'\)"),
        (["a", "b"], [0.1, -0.01], [1.0, 2.0], r"pvar\[1\]"),
        (["a", "b"], [0.1, 0.1], [-1.0, 2.0], r"reward_gap\[0\] .* is not >= 0"),
        (["a", "b"], [0.1, 0.1], [np.nan, np.nan], r"reward_gap\[0\] .*\(1 more bad\)"),
        ([["a", "b"]], [[0.1, 0.1]], [[1.0, 1.0]], "must be 1-D"),
    ],
)
def test_candidate_scores_validation(ids, pvar, gap, message):
    with pytest.raises(ValueError, match=message):
        CandidateScores(ids, pvar, gap)


def test_candidate_scores_copy_and_freeze():
    pvar = np.array([0.1, 0.2])
    c = CandidateScores(np.array(["a", "b"]), pvar, np.array([1.0, np.inf]))  # an overflowed gap is allowed
    pvar[0] = 0.0
    assert c.pvar[0] == 0.1  # later edits by the caller do not leak in
    assert pvar.flags.writeable  # and the caller's array stays writable
    with pytest.raises(ValueError, match="read-only"):
        c.pvar[0] = 0.2


def test_random_disagree_draws_disagreeing_prompts_first_and_uniformly():
    # Prompts 0, 2, 4 disagree (pvar > 0); 1 and 3 are ties and only fill the budget once those run out.
    candidates = CandidateScores(np.arange(5), [0.1, 0.0, 0.01, 0.0, 0.2], [1.0, 0.0, 0.2, 0.0, 3.0])
    first = Counter()
    for seed in range(300):
        picked = select("random-disagree", candidates, 2, np.random.default_rng(seed))
        assert set(picked.tolist()) <= {0, 2, 4}
        first[int(picked[0])] += 1
    assert set(first) == {0, 2, 4}
    assert all(60 <= count <= 140 for count in first.values()), first  # ignores the pvar values themselves
    everything = select("random-disagree", candidates, 5, np.random.default_rng(0))
    assert set(everything[:3].tolist()) == {0, 2, 4} and set(everything[3:].tolist()) == {1, 3}


def test_random_disagree_prefers_the_annotators_view_when_known():
    # A learned reward model gives pvar > 0 everywhere; the stored disagree flags decide instead.
    candidates = CandidateScores(
        np.arange(5), [0.1, 0.2, 0.01, 0.03, 0.2], [1.0, 2.0, 0.2, 0.5, 3.0], disagree=[0, 1, 0, 1, 0]
    )
    for seed in range(50):
        picked = select("random-disagree", candidates, 2, np.random.default_rng(seed))
        assert set(picked.tolist()) == {1, 3}
    with pytest.raises(ValueError, match="disagree has shape"):
        CandidateScores(np.arange(2), [0.1, 0.2], [1.0, 2.0], disagree=[1])
