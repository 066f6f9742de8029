"""The pre-registered experiment's sizing, computed from an earlier sweep's results JSON (the variance components
and cell timings `pvar-loop sweep report` stores): `python -m loop.experiment.sweep.power [--from PATH]`.

Primary endpoint D = Q_pvar(32) - Q_random(64) with the learned RM, paired by seed, 95% t interval; non-inferiority
is met only if its lower bound is above -m. Its per-seed SD is taken to be that of the earlier run's per-seed
PVar - random differences at its largest budget (pooled over its RMs, a chi-square interval on it). That SD holds
a seed part and an eval-prompt part; an eval design with P prompts x S samples changes only the second, by a
factor that depends on the unknown split of that part into between-prompt and within-prompt variance, so each
design is shown at both ends of the split (a design is chosen only if it is no worse at either end).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loop.evaluation.seed_paired import newcombe, t_interval
from storage.errors import PvarLoopError

MARGIN = 0.01
LEVEL = 0.95
SEEDS = 16
PILOT_DESIGN = (
    64,
    4,
)  # the standard run's eval prompts x samples (a results file's own profile overrides it)
DESIGNS = ((64, 4), (128, 2), (256, 1))  # the same 256 answers per checkpoint, so the same evaluation time
DESIGN = (256, 1)
# The standard run of commit 40ab379 (docs/experiment-results.json then), frozen: the pre-registration rests on it.
DEFAULT_SOURCE = Path("docs/experiment-standard-run.json")


class PowerInputError(PvarLoopError, ValueError):
    """A results file the power computation cannot use (the message names the file and key)."""


@dataclass(frozen=True)
class Components:
    sd_total: float  # per-seed SD of a difference at the pilot design (seed part + prompt part)
    sd_total_high: float  # upper end of its 95% chi-square interval
    df: int
    prompt_var: float  # the prompt part of that variance at the pilot design
    pilot: tuple[int, int] = PILOT_DESIGN  # eval prompts x samples the components were measured with


def components(variance_rows: list[dict], pilot: tuple[int, int] = PILOT_DESIGN) -> Components:
    """Pool the per-RM variance rows (between-seed SD over n seeds, prompt SD) of one run."""
    from scipy import stats

    dfs = [len(x["per_seed"]) - 1 for x in variance_rows]
    if not dfs or min(dfs) < 1:
        raise PowerInputError("power: need at least one RM with two or more seeds in the variance rows")
    df = int(sum(dfs))
    pooled = sum(d * x["between_seeds_sd"] ** 2 for d, x in zip(dfs, variance_rows, strict=True)) / df
    high = pooled * df / float(stats.chi2.ppf((1 - LEVEL) / 2, df))
    prompt_var = float(np.mean([x["prompt_sd"] ** 2 for x in variance_rows]))
    return Components(math.sqrt(pooled), math.sqrt(high), df, prompt_var, pilot)


def prompt_factor(
    design: tuple[int, int], within_share: float, pilot: tuple[int, int] = PILOT_DESIGN
) -> float:
    """The eval-prompt variance of a design relative to the pilot design's, when a share `within_share` of the
    pilot's per-prompt difference variance is within-prompt sampling noise (the rest between prompts)."""
    (p0, s0), (p, s) = pilot, design
    between, within = 1.0 - within_share, within_share * s0  # per-sample within variance, pilot units
    return ((between + within / s) / p) / ((between + within / s0) / p0)


def sd_of(c: Components, design: tuple[int, int], within_share: float, *, high: bool = False) -> float:
    total = c.sd_total_high if high else c.sd_total
    seed_var = max(total**2 - c.prompt_var, 0.0)
    return math.sqrt(seed_var + c.prompt_var * prompt_factor(design, within_share, c.pilot))


def power(n: int, sd: float, true_d: float, margin: float = MARGIN, level: float = LEVEL) -> float:
    """P(lower bound of the two-sided t interval over n paired seeds > -margin) when D = true_d."""
    from scipy import stats

    if n < 2 or sd <= 0:
        raise PowerInputError(f"power: need n >= 2 seeds and sd > 0, got n={n}, sd={sd}")
    crit = float(stats.t.ppf((1 + level) / 2, n - 1))
    ncp = (true_d + margin) * math.sqrt(n) / sd
    return float(stats.nct.sf(crit, n - 1, ncp))


def seeds_for(
    target: float, sd: float, true_d: float, margin: float = MARGIN, limit: int = 4096
) -> int | None:
    for n in range(2, limit + 1):
        if power(n, sd, true_d, margin) >= target:
            return n
    return None


def detect_power(n: int, sd: float, effect: float, level: float = LEVEL) -> float:
    """P(the two-sided t interval over n paired seeds excludes 0) when the true difference is `effect`."""
    from scipy import stats

    if n < 2 or sd <= 0:
        raise PowerInputError(f"power: need n >= 2 seeds and sd > 0, got n={n}, sd={sd}")
    crit = float(stats.t.ppf((1 + level) / 2, n - 1))
    ncp = abs(effect) * math.sqrt(n) / sd  # symmetric: the far tail is then the lower one
    lower = float(stats.nct.cdf(-crit, n - 1, ncp))
    # scipy's nct.cdf returns nan far in the tail (ncp ~ 10), where the lower tail is 0 to machine precision
    return float(stats.nct.sf(crit, n - 1, ncp)) + (0.0 if math.isnan(lower) else lower)


SEQUENTIAL_SEEDS = 8
SEQUENTIAL_EFFECTS = (0.03, 0.05, 0.10)  # +0.10: what an earlier single-lineage run saw over random


def sequential_lines(data: dict, *, seeds: int = SEQUENTIAL_SEEDS) -> list[str]:
    """Power of the sequential design's main contrast, the difference of contrasts
    I = (Q_pvar-2r - Q_random-2r) - (Q_pvar - Q_random) at 64 labels, paired by seed, from a run's per-seed SD
    of PVar - random with that run's own eval design (no design factor: from the standard run's 64 x 4 this
    errs on the safe side for 256 x 1). The two contrasts share each seed's RM draw, DPO seed and eval prompts;
    taking them as independent ignores a correlation that, if positive, makes I's SD smaller: conservative."""
    prof = data["facts"]["profile"]
    c = components(data["variance"], (prof["n_eval"], prof["samples_per_prompt"]))
    sd = math.sqrt(2) * c.sd_total
    sd_hi = math.sqrt(2) * c.sd_total_high
    out = [
        f"Per-seed SD of PVar - random ({prof['name']} run, {prof['n_eval']} x {prof['samples_per_prompt']}, "
        f"{c.df} df): {c.sd_total:.4f} (95% upper {c.sd_total_high:.4f})",
        f"SD of I, a difference of two such contrasts taken as independent: {sd:.4f} (upper {sd_hi:.4f})",
        "Power of the two-sided 95% t test of I = 0 (point SD / upper SD), at I = "
        + ", ".join(f"{e:+.2f}" for e in SEQUENTIAL_EFFECTS),
    ]
    for n in sorted({seeds, 8, 16, 32}):
        pts = ", ".join(f"{detect_power(n, sd, e):.2f}" for e in SEQUENTIAL_EFFECTS)
        his = ", ".join(f"{detect_power(n, sd_hi, e):.2f}" for e in SEQUENTIAL_EFFECTS)
        out.append(f"  {n:4d} seeds: {pts}  /  {his}")
    return out


def load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        analysis = data["analysis"]
        rows = analysis.get("variance") or analysis["seed_spread"]
        return {"analysis": analysis, "facts": data["facts"], "variance": rows}
    except FileNotFoundError as e:
        raise PowerInputError(f"{path}: no such results file (`pvar-loop sweep report` writes it)") from e
    except (ValueError, KeyError) as e:
        raise PowerInputError(f"{path}: not a sweep report's JSON (missing {e})") from e


def lines(data: dict, *, seeds: int = SEEDS) -> list[str]:
    """The computation, printed: the earlier run re-analysed, variance components, eval designs, power, cost."""
    a, facts = data["analysis"], data["facts"]
    prof = facts["profile"]
    c = components(data["variance"], (prof["n_eval"], prof["samples_per_prompt"]))
    out = ["Earlier run re-analysed: PVar - random per RM, paired by seed (95% t interval, n - 1 df)"]
    for x in data["variance"]:
        t = t_interval(list(x["per_seed"].values()), LEVEL)
        out.append(
            f"  {x['rm']} @ {x['budget']}: {t.mean:+.3f} [{t.low:+.3f}, {t.high:+.3f}] over {t.n} seeds"
        )
    out.append("Decided-pair rate, PVar - random at the largest budget (Newcombe 95%)")
    cells = {(x["rm"], x["strategy"], x["budget"]): x for x in a["cells"]}
    for (rm, strategy, b), x in sorted(cells.items()):
        r = cells.get((rm, "random", b))
        if strategy != "pvar" or r is None or b != max(facts["profile"]["budgets"]):
            continue
        kp, np_ = _counts(x)
        kr, nr = _counts(r)
        d = newcombe(kp, np_, kr, nr, LEVEL)
        out.append(f"  {rm}: {kp}/{np_} vs {kr}/{nr}: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
    out.append(
        f"Variance components (pooled over {len(data['variance'])} RMs, {c.df} df): per-seed SD of a "
        f"difference {c.sd_total:.4f} (95% upper {c.sd_total_high:.4f}); eval-prompt part at "
        f"{c.pilot[0]}x{c.pilot[1]}: SD {math.sqrt(c.prompt_var):.4f} "
        f"({c.prompt_var / c.sd_total**2:.0%} of the variance)"
    )
    out.append(
        "Eval designs at 256 answers per checkpoint: per-seed SD of D if the prompt part is all between-"
    )
    out.append("prompt (left) or all within-prompt sampling noise (right)")
    for design in DESIGNS:
        lo, hi = sd_of(c, design, 0.0), sd_of(c, design, 1.0)
        out.append(f"  {design[0]} prompts x {design[1]}: {lo:.4f} .. {hi:.4f}")
    out.append(f"Chosen: {DESIGN[0]} x {DESIGN[1]} (no worse than the others at either end of the split)")
    # Power at the split least favourable to the design (all sampling noise: more prompts gain nothing).
    sd, sd_hi = sd_of(c, DESIGN, 1.0), sd_of(c, DESIGN, 1.0, high=True)
    out.append(f"Power of the non-inferiority test (margin {MARGIN}, lower bound of the 95% t interval > -m)")
    out.append(
        f"  at SD {sd:.4f} (point, least favourable split) / {sd_hi:.4f} (95% upper); true D = 0, +0.01, +0.02"
    )
    for n in sorted({seeds, 16, 24, 32, 64, 128}):
        p = [power(n, sd, d) for d in (0.0, 0.01, 0.02)]
        q = [power(n, sd_hi, d) for d in (0.0, 0.01, 0.02)]
        out.append(
            f"  {n:4d} seeds: "
            + ", ".join(f"{x:.2f}" for x in p)
            + "  /  "
            + ", ".join(f"{x:.2f}" for x in q)
        )
    for d in (0.0, 0.01, 0.02):
        out.append(f"  seeds for 80% power at D = {d:+.2f}: {seeds_for(0.8, sd, d)} (point SD)")
    out += cost_lines(a, facts, seeds)
    return out


def _counts(cell: dict) -> tuple[int, int]:
    """(decided, labels) summed over a group's seeds (older files hold per-cell means)."""
    if isinstance(cell.get("decided"), int):
        return cell["decided"], cell["labels"]
    n = cell["cells"]
    return round(cell["decided_ab"] * n), round(cell["labels"] * n)


def cost_lines(
    a: dict, facts: dict, seeds: int, rm_draw_s: float = 232.0, world_rm_s: float = 733.0, jobs: int = 2
) -> list[str]:
    """Wall time of the pre-registered run from the earlier run's measured per-cell times (per worker)."""
    per = {(x["rm"], x["strategy"], x["budget"]): x["wall_s"] / x["cells"] for x in a["cells"]}
    p64, r64 = per.get(("learned", "pvar", 64)), per.get(("learned", "random", 64))
    p32 = next((v for (rm, s, b), v in per.items() if s == "pvar" and b == 32), None)
    if None in (p64, r64, p32):
        return ["Cost: the earlier run lacks the learned 64-label cells or a 32-label PVar cell"]
    draws_before = len(facts["profile"]["seeds"]) - 1
    cells_s = seeds * (p64 + r64 + p32) / jobs
    extra_draws = max(seeds - 1 - draws_before, 0) * rm_draw_s
    # A new world (another eval split) has a recipe the model cache lacks: its own RM is labelled and trained
    # first (501 s labelling + 232 s training, measured for the standard world on this machine).
    total = facts["setup_s"] + world_rm_s + extra_draws + cells_s
    return [
        f"Cost ({facts.get('machine', '?')}, --jobs {jobs}): per seed pvar@64 {p64:.0f} s + random@64 {r64:.0f} s "
        f"+ pvar@32 {p32:.0f} s (measured per worker); {seeds} seeds: cells {cells_s / 60:.0f} min, set-up "
        f"{facts['setup_s'] / 60:.0f} min + {max(seeds - 1 - draws_before, 0)} more learned-RM draws x "
        f"{rm_draw_s:.0f} s = {extra_draws / 60:.0f} min, the new world's own RM {world_rm_s / 60:.0f} min; "
        f"total about {total / 60:.0f} min"
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m loop.experiment.sweep.power", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--from", dest="source", default=str(DEFAULT_SOURCE), help="an earlier sweep's results JSON"
    )
    ap.add_argument(
        "--seeds", type=int, help=f"seeds of the planned run (default {SEEDS}; sequential {SEQUENTIAL_SEEDS})"
    )
    ap.add_argument(
        "--design",
        choices=("preregistered", "sequential"),
        default="preregistered",
        help="the design to size: the pre-registered non-inferiority test, or the sequential design's "
        "difference of contrasts (once the pre-registered run is in, size it from that run's JSON)",
    )
    args = ap.parse_args(argv)
    try:
        data = load(Path(args.source))
        if args.design == "sequential":
            print("\n".join(sequential_lines(data, seeds=args.seeds or SEQUENTIAL_SEEDS)))
        else:
            print("\n".join(lines(data, seeds=args.seeds or SEEDS)))
    except PvarLoopError as e:
        print(f"error: {e}", file=__import__("sys").stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
