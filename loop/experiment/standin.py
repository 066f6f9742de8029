"""Stand-in selection reward models of controlled quality, for the experiment's RM-quality sweep.

A stand-in scores a response as gold + sigma * noise, where gold is the annotator's own verifier score and the
noise is a standard normal drawn deterministically per (draw seed, prompt, response). sigma is calibrated so that
the stand-in's expected agreement with the gold, over the pool's within-prompt pairs that the gold can tell apart,
is a target (0.6 / 0.75 / 0.9): for a gold gap d the stand-in orders the pair right with probability
Phi(d / (sigma * sqrt 2)). This is the pilot's "gold + noise" RM (../shared/notes/demo-world.md) made tunable, so
the sweep can ask at what RM quality PVar starts paying off. Agreement is then *measured* the same way for every
RM (stand-in or learned) on the same pairs, so the dose-response x-axis is comparable.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from storage.errors import PvarLoopError

Gold = Callable[[str, str], float | None]


class StandInError(PvarLoopError, ValueError):
    """A stand-in RM that cannot be built as asked (the message names the value)."""


def standin_id(agreement: float, seed: int) -> str:
    """The reward_model id a stand-in's scores are stored under (one per target agreement and draw)."""
    return f"standin-a{agreement:.2f}-s{seed}"


def _noise(seed: int, prompt: str, response: str) -> float:
    digest = hashlib.sha256(f"{seed}\x00{prompt}\x00{response}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())


def gold_gaps(groups: Iterable[Sequence[float]]) -> np.ndarray:
    """|gold_a - gold_b| over every within-prompt pair of samples whose gold differs."""
    gaps = [abs(a - b) for g in groups for a, b in itertools.combinations(g, 2) if a != b]
    return np.asarray(gaps, dtype=float)


def expected_agreement(gaps: np.ndarray, sigma: float) -> float:
    """Share of gold-distinguishable pairs a gold + N(0, sigma^2) scorer orders like the gold (in expectation)."""
    if sigma <= 0:
        return 1.0
    z = gaps / (sigma * math.sqrt(2.0))
    return float(np.mean([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in z]))


def noise_for_agreement(gaps: np.ndarray, target: float) -> float:
    """The sigma whose expected agreement on these gaps is `target` (bisection on log sigma)."""
    if not 0.5 < target < 1.0:
        raise StandInError(f"stand-in agreement must be in (0.5, 1), got {target}")
    if gaps.size == 0:
        raise StandInError("no sample pair in the pool differs on the gold: agreement is undefined")
    lo, hi = 1e-6, 1e3  # agreement(lo) ~ 1 > target > 0.5 ~ agreement(hi)
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if expected_agreement(gaps, mid) > target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


class StandInRewardModel:
    """A ResponseScorer (loop.scoring.pool): gold + sigma * deterministic noise."""

    def __init__(self, gold: Gold, *, sigma: float, seed: int, model_id: str) -> None:
        self.gold, self.sigma, self.seed, self.model_id = gold, sigma, seed, model_id

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        out = []
        for prompt, response in zip(prompts, responses, strict=True):
            g = self.gold(prompt, response)
            if g is None:
                raise StandInError(f"the gold has no score for prompt {prompt[:60]!r} (no constraints?)")
            out.append(g + self.sigma * _noise(self.seed, prompt, response))
        return np.asarray(out, dtype=float)


def measured_agreement(
    samples: Mapping[str, Sequence[tuple[str, float]]], gold: Gold
) -> tuple[float | None, int]:
    """(agreement, pairs): the share of within-prompt sample pairs the gold tells apart that the RM's scores
    order the same way; samples maps prompt -> [(response, rm score)]. RM ties count as half right."""
    right, n = 0.0, 0
    for prompt, rows in samples.items():
        golds = [gold(prompt, text) for text, _ in rows]
        for (ga, (_, sa)), (gb, (_, sb)) in itertools.combinations(zip(golds, rows, strict=True), 2):
            if ga is None or gb is None or ga == gb:
                continue
            n += 1
            if sa == sb:
                right += 0.5
            elif (sa > sb) == (ga > gb):
                right += 1.0
    return (right / n if n else None), n
