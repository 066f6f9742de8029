"""Prompt-selection strategies: the paper's arms (pvar, low-pvar, reward-gap, random, full) and the
random-disagree control.

Each strategy is a pure scoring function (higher score = picked first) plus one shared selection step,
top-k with ties broken by the caller's numpy Generator: results are reproducible under a seed, yet no prompt
wins a tie just because of where it sits in the pool. `select` returns INDICES into the candidates, best
first; map them to prompt ids with `candidates.prompt_ids[indices]`.

The caller filters the pool: candidates passed in must already exclude prompts labelled (or queued) in
earlier rounds. When k exceeds the pool, the whole pool is returned and the caller reports the shortfall.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

import numpy as np

from loop.acquisition.pvar import RewardsInput, preference_variance, reward_gap

__all__ = [
    "EXPERIMENT_ONLY",
    "PRODUCTION_STRATEGIES",
    "STRATEGIES",
    "CandidateScores",
    "Strategy",
    "StrategySpec",
    "select",
    "top_k",
]


class Strategy(StrEnum):
    """The names of the arms: what config, CLI, operator settings, experiments and the `rounds.strategy` column
    hold (members are their strings, so stored values are unchanged)."""

    PVAR = "pvar"
    LOW_PVAR = "low-pvar"
    REWARD_GAP = "reward-gap"
    RANDOM = "random"
    RANDOM_DISAGREE = "random-disagree"
    FULL = "full"

    def __repr__(self) -> str:  # 'pvar', as the plain strings printed before: messages stay the same
        return repr(self.value)


# random-disagree needs the annotator's own view of which pairs tie, which only an experiment's simulated
# annotator has: production rounds (config `[selection] strategy`, `strategy set`) take the others.
EXPERIMENT_ONLY: frozenset[Strategy] = frozenset({Strategy.RANDOM_DISAGREE})
PRODUCTION_STRATEGIES: tuple[Strategy, ...] = tuple(s for s in Strategy if s not in EXPERIMENT_ONLY)


@dataclass(frozen=True)
class CandidateScores:
    """Scores of the unlabelled pool, aligned by position: prompt_ids[i] has pvar[i] and reward_gap[i].

    disagree (optional, bool): whether the annotator would see a difference in the pair shown for prompt i.
    Only an experiment knows it (its simulated annotator's gold, loop.experiment.runner.mark_disagreement); without
    it, random-disagree falls back to pvar > 0."""

    prompt_ids: np.ndarray
    pvar: np.ndarray
    reward_gap: np.ndarray
    disagree: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Copies, so freezing them below never makes the caller's own arrays read-only.
        ids = np.array(self.prompt_ids)
        pvar = np.array(self.pvar, dtype=np.float64)
        gap = np.array(self.reward_gap, dtype=np.float64)
        for name, arr in (("prompt_ids", ids), ("pvar", pvar), ("reward_gap", gap)):
            if arr.ndim != 1:
                raise ValueError(f"CandidateScores.{name} must be 1-D, got shape {arr.shape}")
        if not len(ids) == len(pvar) == len(gap):
            raise ValueError(
                f"CandidateScores arrays differ in length: prompt_ids={len(ids)}, pvar={len(pvar)}, "
                f"reward_gap={len(gap)}"
            )
        _check_range("pvar", pvar, ids, lambda a: np.isfinite(a) & (a >= 0.0) & (a <= 0.25), "in [0, 0.25]")
        # +inf is a legitimate (overflowed) gap; NaN and negatives are not.
        _check_range("reward_gap", gap, ids, lambda a: a >= 0.0, ">= 0")
        uniq, counts = np.unique(ids, return_counts=True)
        if uniq.size != ids.size:
            raise ValueError(
                f"CandidateScores.prompt_ids has duplicates, e.g. {_plain(uniq[counts > 1][0])!r}"
            )
        arrays = [("prompt_ids", ids), ("pvar", pvar), ("reward_gap", gap)]
        if self.disagree is not None:
            disagree = np.array(self.disagree, dtype=bool)
            if disagree.shape != ids.shape:
                raise ValueError(
                    f"CandidateScores.disagree has shape {disagree.shape}, prompt_ids has {ids.shape}"
                )
            arrays.append(("disagree", disagree))
        for name, arr in arrays:
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def from_rewards(
        cls, prompt_ids: Sequence[object] | np.ndarray, rewards: RewardsInput
    ) -> "CandidateScores":
        """Score a pool from per-prompt reward arrays (2-D or ragged, as in loop.acquisition.pvar)."""
        return cls(np.asarray(prompt_ids), preference_variance(rewards), reward_gap(rewards))

    def __len__(self) -> int:
        return len(self.prompt_ids)


ScoreFn = Callable[[CandidateScores, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class StrategySpec:
    """A named arm: `score` ranks candidates (higher first); uses_k=False means it takes the whole pool."""

    name: Strategy
    score: ScoreFn
    uses_k: bool
    description: str


def _score_pvar(c: CandidateScores, rng: np.random.Generator) -> np.ndarray:
    return c.pvar


def _score_low_pvar(c: CandidateScores, rng: np.random.Generator) -> np.ndarray:
    return -c.pvar


def _score_reward_gap(c: CandidateScores, rng: np.random.Generator) -> np.ndarray:
    return c.reward_gap


def _score_random(c: CandidateScores, rng: np.random.Generator) -> np.ndarray:
    # Top-k of i.i.d. uniform keys is a uniformly random k-subset.
    return rng.random(len(c))


def _score_random_disagree(c: CandidateScores, rng: np.random.Generator) -> np.ndarray:
    # Control for "PVar only avoids ties": uniform among prompts whose shown pair is not a tie; tied prompts
    # rank below all of them and are drawn only when fewer than k disagree (the budget stays equal). A learned
    # reward model never ties exactly, so pvar > 0 holds almost everywhere and this would be plain random:
    # an experiment passes the annotator's own view (c.disagree) instead.
    disagree = c.disagree if c.disagree is not None else c.pvar > 0.0
    return rng.random(len(c)) + disagree


def _score_full(c: CandidateScores, rng: np.random.Generator) -> np.ndarray:
    # All equal: with uses_k=False every candidate is returned, in pool order.
    return np.zeros(len(c))


STRATEGIES: MappingProxyType[Strategy, StrategySpec] = MappingProxyType(
    {
        s.name: s
        for s in (
            StrategySpec(Strategy.PVAR, _score_pvar, True, "top-k highest preference variance (the method)"),
            StrategySpec(
                Strategy.LOW_PVAR, _score_low_pvar, True, "bottom-k preference variance (negative control)"
            ),
            StrategySpec(
                Strategy.REWARD_GAP, _score_reward_gap, True, "top-k max-min reward (competing heuristic)"
            ),
            StrategySpec(Strategy.RANDOM, _score_random, True, "uniformly random k prompts (baseline)"),
            StrategySpec(
                Strategy.RANDOM_DISAGREE,
                _score_random_disagree,
                True,
                "uniformly random k among prompts whose samples disagree (control: tie avoidance only)",
            ),
            StrategySpec(
                Strategy.FULL, _score_full, False, "every candidate; k is validated but otherwise ignored"
            ),
        )
    }
)


def select(strategy: str, candidates: CandidateScores, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (int64, best first, unique) of the candidates `strategy` picks: min(k, pool) of them.

    "full" returns all indices in pool order whatever k is. k must be a non-negative int.
    """
    spec = STRATEGIES.get(strategy)
    if spec is None:
        raise ValueError(f"unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    _check_k(k)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not spec.uses_k:
        return np.arange(len(candidates), dtype=np.int64)
    return top_k(spec.score(candidates, rng), k, rng)


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k highest scores, best first; equal scores are ordered by random keys from `rng`."""
    _check_k(k)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError(f"scores contain NaN at index {int(np.flatnonzero(np.isnan(scores))[0])}")
    tie_keys = rng.random(scores.size)
    # lexsort: the last key is primary, so sort by descending score, then by the random key.
    order = np.lexsort((tie_keys, -scores))
    return order[:k].astype(np.int64)


def _check_k(k: object) -> None:
    # bool is an int subclass but selecting True prompts is a bug, not a request.
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"k must be a non-negative int, got {k!r} ({type(k).__name__})")
    if k < 0:
        raise ValueError(f"k must be a non-negative int, got {k}")


def _check_range(name: str, arr: np.ndarray, ids: np.ndarray, ok: Callable, expected: str) -> None:
    bad = np.flatnonzero(~ok(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"CandidateScores.{name}[{i}] (prompt {_plain(ids[i])!r}) = {arr[i]} is not {expected}"
            + (f" ({bad.size - 1} more bad)" if bad.size > 1 else "")
        )


def _plain(value: object) -> object:
    """A numpy scalar as the Python value, so error messages show 'p1', not np.str_('p1')."""
    return value.item() if isinstance(value, np.generic) else value
