"""The sweep's statistics, from per-cell per-prompt scores (loop/experiment/sweep/data.py or table.py reads them).

The unit of replication is the seed (the same seed index is the same RM draw, selection seed and DPO seed in
every arm): every arm difference is paired by seed with a t interval over the per-seed differences
(loop/evaluation/seed_paired.py), the hierarchical bootstrap (seeds, then prompts) printed beside it; a point
of the curve is the t interval over its seeds' means. Only the eval prompts every evaluated cell has count.
Cells that trained nothing (no decided pair) have no evaluation and are excluded from the scores, counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from loop.acquisition.strategies import Strategy
from loop.evaluation.efficiency import labels_to_reach, labels_to_reach_interval
from loop.evaluation.seed_paired import (
    HierarchicalBootstrap,
    newcombe,
    paired_by_seed,
    t_interval,
    wilson,
)
from loop.experiment.sweep.data import CellResult
from loop.experiment.sweep.profiles import Key

PVAR, RANDOM = str(Strategy.PVAR), str(Strategy.RANDOM)


def _key(r: CellResult) -> Key:
    """(rm, arm label, labels in all): a one-round cell's label is its strategy, a cell of several rounds
    names them (pvar-2r), so 2 x 32 labels in the loop and 64 at once are different arms of 64 labels."""
    return (r.cell.rm, r.cell.label, r.cell.labels)


def _ci(i) -> dict:
    return {"mean": i.mean, "low": i.low, "high": i.high}


def scores_by_key(results: Sequence[CellResult]) -> tuple[dict[Key, dict[int, dict[str, float]]], list[str]]:
    """{key: {seed: {prompt: mean score}}} on the eval prompts every evaluated cell has, and those prompts."""
    evaluated = [r for r in results if r.means]
    prompts = sorted(set.intersection(*(set(r.means) for r in evaluated))) if evaluated else []
    out: dict[Key, dict[int, dict[str, float]]] = defaultdict(dict)
    for r in evaluated:
        out[_key(r)][r.cell.seed] = {p: r.means[p] for p in prompts}
    return dict(sorted(out.items())), prompts


def cell_table(results: Sequence[CellResult]) -> list[dict]:
    """Per (rm, strategy, budget): cells, evaluated cells, label counts summed over seeds with the decided and
    tie rates (Wilson intervals), mean win rate vs initial."""
    groups: dict[Key, list[CellResult]] = defaultdict(list)
    for r in results:
        groups[_key(r)].append(r)
    rows = []
    for (rm, strategy, budget), rs in sorted(groups.items()):
        labels = sum(r.labels for r in rs)
        decided, ties = sum(r.decided_ab for r in rs), sum(r.ties for r in rs)
        wins = [r.win_rate for r in rs if r.means and r.win_rate is not None]
        rows.append(
            {
                "rm": rm,
                "strategy": strategy,
                "budget": budget,
                "cells": len(rs),
                "evaluated": sum(bool(r.means) for r in rs),
                "labels": labels,
                "decided": decided,
                "ties": ties,
                "decided_rate": _ci(wilson(decided, labels)) if labels else None,
                "tie_rate": _ci(wilson(ties, labels)) if labels else None,
                "win_rate": float(np.mean(wins)) if wins else None,
                "wall_s": sum(r.wall_s or 0.0 for r in rs),
            }
        )
    return rows


def decided_rates(
    cells: Sequence[dict], budgets: Sequence[int], results: Sequence[CellResult] = ()
) -> list[dict]:
    """Per RM and budget both arms ran: PVar's decided-pair rate minus random's, Newcombe interval (labels as
    independent), and beside it ("paired") the t interval over seeds of the per-seed rate differences."""
    by = {(c["rm"], c["strategy"], c["budget"]): c for c in cells}
    out = []
    for rm, strategy, b in sorted(by):
        other = by.get((rm, RANDOM, b))
        if strategy != PVAR or other is None or not by[(rm, PVAR, b)]["labels"] or not other["labels"]:
            continue
        p = by[(rm, PVAR, b)]
        d = newcombe(p["decided"], p["labels"], other["decided"], other["labels"])
        paired = seed_paired_rate_difference(results, (rm, PVAR, b), (rm, RANDOM, b))
        out.append(
            {
                "rm": rm,
                "budget": b,
                "pvar": p["decided"],
                "random": other["decided"],
                **_ci(d),
                "paired": paired,
            }
        )
    return [d for d in out if d["budget"] in budgets]


def seed_paired_rate_difference(results: Sequence[CellResult], a: Key, b: Key) -> dict | None:
    """Decided rate of A minus B per seed both ran (with labels), t interval over those seeds: the labels of one
    seed share its RM draw and pool, so they are not independent as Newcombe's interval takes them to be.
    None below two seeds."""
    rate: dict[Key, dict[int, float]] = defaultdict(dict)
    for r in results:
        if r.labels:
            rate[_key(r)][r.cell.seed] = r.decided_ab / r.labels
    seeds = sorted(set(rate[a]) & set(rate[b]))
    if len(seeds) < 2:
        return None
    i = t_interval([rate[a][s] - rate[b][s] for s in seeds])
    return {**_ci(i), "seeds": len(seeds)}


def analyse(
    results: Sequence[CellResult],
    *,
    budgets: Sequence[int],
    curve_rm: str,
    agreements: Mapping[str, float | None],
    contrasts: Sequence[tuple[Key, Key]] = (),
    secondary: Sequence[tuple[Key, Key]] = (),
    interactions: Sequence[tuple[Key, Key, Key, Key]] = (),
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """The report's numbers: curve, paired-by-seed differences per RM and budget, the pre-registered contrasts
    (and further ones: secondary A - B, interactions (A - B) - (C - D)), labels-to-reach, decided-pair rates,
    variance components."""
    scores, prompts = scores_by_key(results)
    top = max(budgets)
    rms = sorted({r.cell.rm for r in results})
    cells = cell_table(results)
    out: dict = {
        "eval_prompts": len(prompts),
        "curve_rm": curve_rm,
        "cells": cells,
        "excluded": sorted(r.cell.arm for r in results if not r.means and r.status == "done"),
        "curve": {},
        "differences": [],
        "contrasts": [],
    }
    for strategy in (PVAR, RANDOM):
        out["curve"][strategy] = [
            {"budget": b, "seeds": len(scores[k]), **_ci(t_interval(_seed_means(scores[k])))}
            for b in budgets
            if (k := (curve_rm, strategy, b)) in scores
        ]
    for rm in rms:
        for b in budgets:
            a, r = (rm, PVAR, b), (rm, RANDOM, b)
            if _paired(scores, a, r):
                d = paired_by_seed(scores[a], scores[r], n_boot=n_boot, seed=seed)
                out["differences"].append(
                    {"rm": rm, "budget": b, "agreement": agreements.get(rm), **d.as_dict()}
                )
    for a, b in contrasts:
        if _paired(scores, a, b):
            d = paired_by_seed(scores[a], scores[b], n_boot=n_boot, seed=seed)
            out["contrasts"].append({"a": list(a), "b": list(b), **d.as_dict()})
    if secondary or interactions:
        out["secondary"] = [
            {
                "a": list(a),
                "b": list(b),
                **paired_by_seed(scores[a], scores[b], n_boot=n_boot, seed=seed).as_dict(),
                "decided": _decided_difference(cells, a, b, results),
            }
            for a, b in secondary
            if _paired(scores, a, b)
        ]
        out["interactions"] = [
            {"keys": [list(k) for k in keys], **x.as_dict()}
            for keys in interactions
            if (x := _interaction(scores, keys, n_boot, seed)) is not None
        ]
    out["headline"] = _labels_to_reach(scores, curve_rm, budgets, top, n_boot, seed)
    out["dose_response"] = [d for d in out["differences"] if d["budget"] == top]
    out["decided_rates"] = decided_rates(cells, [top], results)
    out["variance"] = [x for rm in rms if (x := seed_spread(results, rm, top, prompts)) is not None]
    return out


def _decided_difference(cells: Sequence[dict], a: Key, b: Key, results: Sequence[CellResult]) -> dict | None:
    """Decided pairs of A and B summed over their seeds, with the difference of the rates (Newcombe) and its
    paired-by-seed t interval."""
    by = {(c["rm"], c["strategy"], c["budget"]): c for c in cells}
    x, y = by.get(a), by.get(b)
    if x is None or y is None or not x["labels"] or not y["labels"]:
        return None
    d = newcombe(x["decided"], x["labels"], y["decided"], y["labels"])
    return {
        "a": x["decided"],
        "a_labels": x["labels"],
        "b": y["decided"],
        "b_labels": y["labels"],
        **_ci(d),
        "paired": seed_paired_rate_difference(results, a, b),
    }


def _interaction(scores, keys: tuple[Key, Key, Key, Key], n_boot: int, seed: int):
    """(A - B) - (C - D), paired by seed: each seed's prompt-level differences A - B and C - D, compared as two
    arms (t interval over the seeds all four cells share; the bootstrap resamples seeds, then prompts)."""
    if any(k not in scores for k in keys):
        return None
    a, b, c, d = (scores[k] for k in keys)
    seeds = sorted(set(a) & set(b) & set(c) & set(d))
    if not seeds:
        return None
    first = {s: {p: a[s][p] - b[s][p] for p in a[s]} for s in seeds}
    second = {s: {p: c[s][p] - d[s][p] for p in c[s]} for s in seeds}
    return paired_by_seed(first, second, n_boot=n_boot, seed=seed)


def _seed_means(by_seed: Mapping[int, Mapping[str, float]]) -> list[float]:
    return [float(np.mean(list(m.values()))) for _, m in sorted(by_seed.items())]


def _paired(scores: Mapping[Key, Mapping[int, object]], a: Key, b: Key) -> bool:
    return a in scores and b in scores and bool(set(scores[a]) & set(scores[b]))


def seed_spread(
    results: Sequence[CellResult], rm: str, budget: int, prompts: Sequence[str] | None = None
) -> dict | None:
    """Variance components of PVar - random for one RM and budget: the per-seed differences, their SD between
    seeds (which holds the eval prompts' noise too) and the SD one seed's difference has from the eval prompts
    alone (the standard error over its prompts); their ratio is the eval prompts' share of the per-seed
    variance. None without two seeds evaluated in both arms."""
    arms = {
        (r.cell.label, r.cell.seed): r.means
        for r in results
        if r.cell.rm == rm and r.cell.labels == budget and r.means
    }
    seeds = sorted(s for (strategy, s) in arms if strategy == PVAR and (RANDOM, s) in arms)
    if len(seeds) < 2:
        return None
    per_seed, prompt_var = [], []
    for s in seeds:
        a, b = arms[(PVAR, s)], arms[(RANDOM, s)]
        common = sorted(prompts if prompts is not None else a.keys() & b.keys())
        d = np.array([a[p] - b[p] for p in common])
        per_seed.append(float(d.mean()))
        prompt_var.append(float(d.var(ddof=1)) / len(d))
    between = float(np.std(per_seed, ddof=1))
    prompt_sd = float(np.sqrt(np.mean(prompt_var)))
    return {
        "rm": rm,
        "budget": budget,
        "per_seed": dict(zip(seeds, per_seed, strict=True)),
        "between_seeds_sd": between,
        "prompt_sd": prompt_sd,
        "prompt_share": None if between == 0 else prompt_sd**2 / between**2,
    }


def _labels_to_reach(
    scores, rm: str, budgets: Sequence[int], top: int, n_boot: int, seed: int
) -> dict | None:
    """Labels PVar needs to reach random's quality at the largest budget, on the curve RM, with the
    hierarchical bootstrap's interval (seeds shared by every point of both curves)."""
    have = [b for b in budgets if (rm, PVAR, b) in scores]
    target_key = (rm, RANDOM, top)
    if target_key not in scores or len(have) < 2:
        return None
    keys = [(rm, PVAR, b) for b in have] + [target_key]
    if not set.intersection(*(set(scores[k]) for k in keys)):
        return None
    boot = HierarchicalBootstrap({k: scores[k] for k in keys}, n_boot=n_boot, seed=seed)
    target = boot.point[target_key]
    point = labels_to_reach([(b, boot.point[(rm, PVAR, b)]) for b in have], target)
    curves = [[(b, float(boot.reps[(rm, PVAR, b)][i])) for b in have] for i in range(n_boot)]
    low, high, share = labels_to_reach_interval(curves, list(boot.reps[target_key]), level=boot.level)
    return {
        "rm": rm,
        "random_budget": top,
        "random_mean": target,
        "labels": point,
        "low": low,
        "high": high,
        "share_reached": share,
        "seeds": len(boot.seeds),
        "saving": None if point is None else 1 - point / top,
    }
