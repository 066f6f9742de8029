"""Arm comparisons paired by seed, and rates with score intervals (scipy.stats and statsmodels do the maths).

A seed index is the same RM draw, selection seed and DPO seed in both arms, so the unit of replication is the
seed: the primary interval of arm A - arm B is a t interval (n - 1 df) over the per-seed differences of each
seed's mean score (over its eval prompts and samples). A percentile bootstrap over 3 seeds has no small-sample
correction and understates the spread; the t interval does not. The hierarchical bootstrap (seeds, then eval
prompts within each drawn seed; both arms take the same draws) is printed beside it as a check.

Rates (decided pairs among labels, ties) get Wilson intervals, and a difference of two rates Newcombe's.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from loop.evaluation.paired import EvaluationDataError, Interval

Scores = Mapping[int, Mapping[str, float]]  # seed -> {eval prompt id: mean judge score}


@dataclass(frozen=True)
class SeedDifference:
    """Arm A - arm B paired by seed: the t interval (primary) and the hierarchical bootstrap's (check)."""

    mean: float
    low: float
    high: float
    seeds: int
    boot_low: float
    boot_high: float
    per_seed: dict[int, float]

    def as_dict(self) -> dict:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "seeds": self.seeds,
            "boot_low": self.boot_low,
            "boot_high": self.boot_high,
            "per_seed": {str(s): v for s, v in sorted(self.per_seed.items())},
        }


def _check_level(where: str, level: float) -> None:
    if not 0.0 < level < 1.0:
        raise EvaluationDataError(f"{where}: level must be in (0, 1), got {level}")


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of independent values (one per seed) with its Student t interval, n - 1 df. One value: no
    interval (NaN bounds); identical values: a zero-width interval."""
    from scipy import stats

    _check_level("t_interval", level)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise EvaluationDataError(f"t_interval: need a non-empty 1-D list of values, got shape {x.shape}")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, math.nan, 1)
    if float(np.ptp(x)) == 0.0:  # identical values: no spread (sem would be float noise, not 0)
        return Interval(mean, mean, mean, int(x.size))
    sem = float(stats.sem(x))
    low, high = stats.t.interval(level, x.size - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), int(x.size))


class HierarchicalBootstrap:
    """Replicates of several arms' mean scores on shared draws: each replicate draws seeds with replacement
    (by seed index, the same draw for every arm), then for each drawn seed the eval prompts with replacement
    (the same for every arm). Only seeds and prompts every arm has count."""

    def __init__(
        self,
        arms: Mapping[Hashable, Scores],
        *,
        n_boot: int = 2000,
        seed: int = 0,
        level: float = 0.95,
    ):
        if n_boot < 1:
            raise EvaluationDataError(f"HierarchicalBootstrap: n_boot must be >= 1, got {n_boot}")
        _check_level("HierarchicalBootstrap", level)
        self.level = level
        seed_sets = [set(s) for s in arms.values()]
        self.seeds = sorted(set.intersection(*seed_sets)) if seed_sets else []
        maps = [arms[k][s] for k in arms for s in self.seeds]
        self.prompts = sorted(set.intersection(*(set(m) for m in maps))) if maps else []
        if not self.seeds or not self.prompts:
            raise EvaluationDataError(
                f"HierarchicalBootstrap: the arms share {len(self.seeds)} seeds and {len(self.prompts)} eval "
                "prompts; need at least one of each (were they evaluated on the same eval split?)"
            )
        rng = np.random.default_rng(seed)
        n_s, n_p = len(self.seeds), len(self.prompts)
        seed_pick = rng.integers(0, n_s, size=(n_boot, n_s))
        prompt_pick = rng.integers(0, n_p, size=(n_boot, n_s, n_p))
        self.point: dict[Hashable, float] = {}
        self.reps: dict[Hashable, np.ndarray] = {}
        for key, scores in arms.items():
            m = np.array([[scores[s][p] for p in self.prompts] for s in self.seeds], dtype=float)
            self.point[key] = float(m.mean())
            self.reps[key] = m[seed_pick[:, :, None], prompt_pick].mean(axis=(1, 2))

    def bounds(self, reps: np.ndarray) -> tuple[float, float]:
        alpha = (1.0 - self.level) / 2.0
        low, high = np.quantile(reps, [alpha, 1.0 - alpha])
        return float(low), float(high)


def seed_means(scores: Scores, prompts: Sequence[str]) -> dict[int, float]:
    return {s: float(np.mean([m[p] for p in prompts])) for s, m in scores.items()}


def paired_by_seed(
    a: Scores, b: Scores, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> SeedDifference:
    """A - B over the seeds and eval prompts both arms have: t interval over the per-seed differences, with
    the hierarchical bootstrap's interval beside it."""
    boot = HierarchicalBootstrap({"a": a, "b": b}, n_boot=n_boot, seed=seed, level=level)
    ma = seed_means({s: a[s] for s in boot.seeds}, boot.prompts)
    mb = seed_means({s: b[s] for s in boot.seeds}, boot.prompts)
    per_seed = {s: ma[s] - mb[s] for s in boot.seeds}
    t = t_interval(list(per_seed.values()), level)
    blow, bhigh = boot.bounds(boot.reps["a"] - boot.reps["b"])
    return SeedDifference(t.mean, t.low, t.high, len(per_seed), blow, bhigh, per_seed)


def wilson(count: int, nobs: int, level: float = 0.95) -> Interval:
    """A rate count / nobs with its Wilson score interval."""
    from statsmodels.stats.proportion import proportion_confint

    _check_level("wilson", level)
    if nobs < 1 or not 0 <= count <= nobs:
        raise EvaluationDataError(f"wilson: need 0 <= count <= nobs and nobs >= 1, got {count} of {nobs}")
    low, high = proportion_confint(count, nobs, alpha=1.0 - level, method="wilson")
    return Interval(count / nobs, float(low), float(high), nobs)


def newcombe(count_a: int, nobs_a: int, count_b: int, nobs_b: int, level: float = 0.95) -> Interval:
    """Rate A - rate B of two independent samples with Newcombe's hybrid score interval."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    _check_level("newcombe", level)
    for count, nobs in ((count_a, nobs_a), (count_b, nobs_b)):
        if nobs < 1 or not 0 <= count <= nobs:
            raise EvaluationDataError(
                f"newcombe: need 0 <= count <= nobs and nobs >= 1, got {count} of {nobs}"
            )
    low, high = confint_proportions_2indep(
        count_a, nobs_a, count_b, nobs_b, method="newcomb", compare="diff", alpha=1.0 - level
    )
    n = nobs_a + nobs_b
    return Interval(count_a / nobs_a - count_b / nobs_b, float(low), float(high), n)
