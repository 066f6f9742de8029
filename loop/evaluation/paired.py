"""Paired comparisons of per-prompt judge scores (pure numpy, no database).

The unit is the eval prompt: a checkpoint's evidence is {prompt id: mean judge score of its samples}
(storage.repositories.evaluations.per_prompt_means). Two checkpoints evaluated on the same prompts are
compared prompt by prompt, which removes the prompt-difficulty variance a comparison of two means keeps; the
bootstrap resamples prompts. Seeds of a whole training run (RM draw, label draw, DPO) are a second level of
randomness: arms compared over seeds are paired by seed (loop/evaluation/seed_paired.py).

Power: with per-prompt differences of standard deviation sd, the interval's half width is about
z * sd / sqrt(n). The replication in the demo world (80 eval prompts x 4 samples, pvar - random) gave
+-0.057, i.e. sd = 0.057 * sqrt(80) / 1.96 = 0.26; eval_prompts_needed(0.26, 0.04) = 163 and
eval_prompts_needed(0.26, 0.03) = 289 eval prompts (80 * (0.057 / h) ** 2 for half width h).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from storage.errors import PvarLoopError


class EvaluationDataError(PvarLoopError, ValueError):
    """Per-prompt scores that cannot be compared (no prompts in common, no seeds, bad knobs)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval; n = the number of prompts it rests on."""

    mean: float
    low: float
    high: float
    n: int


def _check_knobs(where: str, n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise EvaluationDataError(f"{where}: n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise EvaluationDataError(f"{where}: level must be in (0, 1), got {level}")


def mean_interval(
    values: Sequence[float], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Mean of per-prompt values with a percentile bootstrap over prompts (scipy.stats.bootstrap)."""
    from scipy import stats

    _check_knobs("mean_interval", n_boot, level)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise EvaluationDataError(f"mean_interval: need a non-empty 1-D list of values, got shape {x.shape}")
    point = float(x.mean())
    if x.size == 1 or float(np.ptp(x)) == 0.0:  # nothing to resample: the interval is the point
        return Interval(mean=point, low=point, high=point, n=int(x.size))
    ci = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    # Quantiles of a discrete bootstrap can miss the point by float rounding; keep the point inside.
    return Interval(mean=point, low=min(float(ci.low), point), high=max(float(ci.high), point), n=int(x.size))


def paired_difference(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Mean over the prompts both have of a[p] - b[p], with a percentile bootstrap over those prompts."""
    common = sorted(set(a) & set(b))
    if not common:
        raise EvaluationDataError(
            f"paired_difference: the two sides share no prompt id ({len(a)} and {len(b)} prompts); "
            "were they evaluated on the same eval split?"
        )
    diff = [a[p] - b[p] for p in common]
    return mean_interval(diff, n_boot=n_boot, seed=seed, level=level)


def eval_prompts_needed(sd_per_prompt_diff: float, half_width: float, level: float = 0.95) -> int:
    """Eval prompts for a paired interval of +-half_width when per-prompt differences have this standard
    deviation (normal approximation: n = (z * sd / half_width) ** 2, rounded up)."""
    if sd_per_prompt_diff < 0 or not math.isfinite(sd_per_prompt_diff):
        raise EvaluationDataError(
            f"eval_prompts_needed: sd must be finite and >= 0, got {sd_per_prompt_diff}"
        )
    if half_width <= 0:
        raise EvaluationDataError(f"eval_prompts_needed: half_width must be > 0, got {half_width}")
    if not 0.0 < level < 1.0:
        raise EvaluationDataError(f"eval_prompts_needed: level must be in (0, 1), got {level}")
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    # Round before ceil so an exact square (float noise above an integer) does not ask for one prompt more.
    return max(1, math.ceil(round((z * sd_per_prompt_diff / half_width) ** 2, 9)))


def sd_from_half_width(half_width: float, n_prompts: int, level: float = 0.95) -> float:
    """The per-prompt standard deviation behind an observed interval of +-half_width over n_prompts."""
    if n_prompts < 1 or half_width < 0:
        raise EvaluationDataError(
            f"sd_from_half_width: need n_prompts >= 1 and half_width >= 0, got {n_prompts} and {half_width}"
        )
    return half_width * math.sqrt(n_prompts) / NormalDist().inv_cdf((1.0 + level) / 2.0)
