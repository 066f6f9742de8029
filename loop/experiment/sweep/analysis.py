"""The sweep's statistics, from per-cell per-prompt scores (pure numpy; loop/experiment/sweep/data.py reads them).

One bootstrap for everything, so every interval is consistent with every other: each replicate resamples the
eval prompts ONCE (shared by all arms: differences stay paired on prompts) and, per arm, its seeds (seed-to-seed
variance, which covers the selection, the RM draw and the DPO seed, stays in the interval). An arm's value in a
replicate is the mean over its resampled seeds of the mean judge score over the resampled prompts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from loop.acquisition.strategies import Strategy
from loop.evaluation.efficiency import labels_to_reach, labels_to_reach_interval
from loop.evaluation.paired import SeedPooledBootstrap
from loop.experiment.sweep.data import CellResult

Key = tuple[str, str, int]  # (rm, strategy, budget)


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    seeds: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "seeds": self.seeds}


class Bootstrap:
    """Every arm's seed-pooled mean score, keyed (rm, strategy, budget), on shared prompt resamples."""

    def __init__(
        self, results: Sequence[CellResult], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
    ):
        by_key: dict[Key, list[Mapping[str, float]]] = defaultdict(list)
        for r in results:
            if r.means:
                by_key[(r.cell.rm, str(r.cell.strategy), r.cell.budget)].append(r.means)
        self._boot = SeedPooledBootstrap(dict(sorted(by_key.items())), n_boot=n_boot, seed=seed, level=level)
        self.prompts, self.level = self._boot.prompts, level
        self.point, self.reps = self._boot.point, self._boot.reps  # the headline interpolates per replicate
        self.seeds = {key: len(maps) for key, maps in by_key.items()}

    def estimate(self, key: Key) -> Estimate:
        e = self._boot.estimate(key)
        return Estimate(e.mean, e.low, e.high, self.seeds[key])

    def difference(self, a: Key, b: Key) -> Estimate:
        d = self._boot.difference(a, b)
        return Estimate(d.mean, d.low, d.high, min(self.seeds[a], self.seeds[b]))

    def has(self, key: Key) -> bool:
        return self._boot.has(key)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def cell_table(results: Sequence[CellResult]) -> list[dict]:
    """Per (rm, strategy, budget): seeds, mean labels / decided / ties, mean win rate vs initial."""
    groups: dict[Key, list[CellResult]] = defaultdict(list)
    for r in results:
        groups[(r.cell.rm, str(r.cell.strategy), r.cell.budget)].append(r)
    rows = []
    for (rm, strategy, budget), rs in sorted(groups.items()):
        rows.append(
            {
                "rm": rm,
                "strategy": strategy,
                "budget": budget,
                "cells": len(rs),
                "evaluated": sum(r.means is not None for r in rs),
                "decided_ab": _mean([r.decided_ab for r in rs]),
                "ties": _mean([r.ties for r in rs]),
                "labels": _mean([r.labels for r in rs]),
                "win_rate": _mean([r.win_rate for r in rs if r.win_rate is not None]),
                "wall_s": sum(r.wall_s or 0.0 for r in rs),
            }
        )
    return rows


def analyse(
    results: Sequence[CellResult],
    *,
    budgets: Sequence[int],
    curve_rm: str,
    agreements: Mapping[str, float | None],
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """The report's numbers: curve, paired differences per RM and budget, labels-to-reach, dose-response."""
    boot = Bootstrap(results, n_boot=n_boot, seed=seed)
    pvar, rand = str(Strategy.PVAR), str(Strategy.RANDOM)
    top = max(budgets)
    rms = sorted({r.cell.rm for r in results})
    out: dict = {
        "eval_prompts": len(boot.prompts),
        "curve_rm": curve_rm,
        "cells": cell_table(results),
        "curve": {},
        "differences": [],
    }
    for strategy in (pvar, rand):
        out["curve"][strategy] = [
            {"budget": b, **boot.estimate((curve_rm, strategy, b)).as_dict()}
            for b in budgets
            if boot.has((curve_rm, strategy, b))
        ]
    for rm in rms:
        for b in budgets:
            if boot.has((rm, pvar, b)) and boot.has((rm, rand, b)):
                d = boot.difference((rm, pvar, b), (rm, rand, b))
                out["differences"].append(
                    {"rm": rm, "budget": b, "agreement": agreements.get(rm), **d.as_dict()}
                )
    out["headline"] = _labels_to_reach(boot, curve_rm, budgets, top)
    out["dose_response"] = [d for d in out["differences"] if d["budget"] == top]
    out["seed_spread"] = [x for rm in rms if (x := seed_spread(results, rm, top)) is not None]
    return out


def seed_spread(results: Sequence[CellResult], rm: str, budget: int) -> dict | None:
    """Where the uncertainty of PVar - random comes from, for one RM and budget: the difference per seed (the
    same seed index is the same RM draw for both arms), its SD between seeds, and the SD a seed's difference
    has from the eval prompts alone. None without two seeds evaluated in both arms."""
    pvar, rand = str(Strategy.PVAR), str(Strategy.RANDOM)
    arms: dict[tuple[str, int], Mapping[str, float]] = {
        (str(r.cell.strategy), r.cell.seed): r.means
        for r in results
        if r.cell.rm == rm and r.cell.budget == budget and r.means
    }
    seeds = sorted(s for (strategy, s) in arms if strategy == pvar and (rand, s) in arms)
    if len(seeds) < 2:
        return None
    per_seed, prompt_var = [], []
    for s in seeds:
        a, b = arms[(pvar, s)], arms[(rand, s)]
        d = np.array([a[p] - b[p] for p in sorted(a.keys() & b.keys())])
        per_seed.append(float(d.mean()))
        prompt_var.append(float(d.var(ddof=1)) / len(d))
    return {
        "rm": rm,
        "budget": budget,
        "per_seed": dict(zip(seeds, per_seed, strict=True)),
        "between_seeds_sd": float(np.std(per_seed, ddof=1)),
        "prompt_sd": float(np.sqrt(np.mean(prompt_var))),
    }


def _labels_to_reach(boot: Bootstrap, rm: str, budgets: Sequence[int], top: int) -> dict | None:
    """Labels PVar needs to reach random's quality at the largest budget, on the curve RM, with an interval."""
    pvar, rand = str(Strategy.PVAR), str(Strategy.RANDOM)
    have = [b for b in budgets if boot.has((rm, pvar, b))]
    if not boot.has((rm, rand, top)) or len(have) < 2:
        return None
    target = boot.point[(rm, rand, top)]
    point = labels_to_reach([(b, boot.point[(rm, pvar, b)]) for b in have], target)
    n_boot = len(boot.reps[(rm, rand, top)])
    curves = [[(b, float(boot.reps[(rm, pvar, b)][i])) for b in have] for i in range(n_boot)]
    low, high, share = labels_to_reach_interval(curves, list(boot.reps[(rm, rand, top)]), level=boot.level)
    return {
        "rm": rm,
        "random_budget": top,
        "random_mean": target,
        "labels": point,
        "low": low,
        "high": high,
        "share_reached": share,
        "saving": None if point is None else 1 - point / top,
    }
