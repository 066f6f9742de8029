"""The paper's mechanism, measured: the DPO gradient norm each labelled pair gives at the initial policy (0 for a
tie), for each arm's picks, and the rank correlation between PVar and that norm over the pool.

`pvar-loop sweep mechanism` computes the norms from the sweep's database (loop/ml/dpo_gradient.py) into
<data dir>/experiment/mechanism.csv; `sweep report` copies that file beside the document (<stem>-mechanism.csv),
so `--from-table` has it too, and adds the mechanism tables. Rows: kind "pick" (a cell's labelled item) or
"pool" (the pair a selection RM shows for a pool prompt, as if it were decided).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from loop.evaluation.seed_paired import t_interval

COLUMNS = ("kind", "cell", "rm", "seed", "strategy", "budget", "prompt", "pvar", "decided", "grad_norm")
FILE = Path("experiment") / "mechanism.csv"


def write_rows(path: Path, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    key = [tuple(str(r[c]) for c in COLUMNS) for r in rows]
    with tmp.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in sorted(key):
            w.writerow(r)
    tmp.replace(path)
    return path


def read_rows(path: Path) -> list[dict]:
    from loop.experiment.sweep.table import SweepTableError

    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise SweepTableError(f"{path}:1: expected the columns {','.join(COLUMNS)}")
        out = []
        for line, r in enumerate(reader, start=2):
            try:
                out.append(
                    {
                        **r,
                        "seed": int(r["seed"]),
                        "budget": int(r["budget"]),
                        "pvar": float(r["pvar"]),
                        "decided": int(r["decided"]),
                        "grad_norm": float(r["grad_norm"]),
                    }
                )
            except ValueError as e:
                raise SweepTableError(f"{path}:{line}: {e}") from e
    return out


def _ci(i) -> dict:
    return {"mean": i.mean, "low": i.low, "high": i.high}


def analyse_mechanism(rows: Sequence[dict], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Per (rm, strategy, budget): gradient norm per label (ties 0) and per decided pair, t intervals over the
    seeds' means; per (rm, seed): Spearman(PVar, norm) over the pool with a percentile bootstrap over prompts."""
    from scipy import stats

    cells: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    pools: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "pick":
            cells[(r["rm"], r["strategy"], r["budget"])][r["seed"]].append(r)
        else:
            pools[(r["rm"], r["seed"])].append(r)
    picks, diffs = [], []
    for (rm, strategy, budget), by_seed in sorted(cells.items()):
        other = cells.get((rm, "random", budget))
        if strategy == "pvar" and other is not None:
            diffs.append({"rm": rm, "budget": budget, **_paired(by_seed, other)})
        per_label = [float(np.mean([x["grad_norm"] for x in v])) for _, v in sorted(by_seed.items())]
        decided = [[x["grad_norm"] for x in v if x["decided"]] for _, v in sorted(by_seed.items())]
        per_decided = [float(np.mean(d)) for d in decided if d]
        picks.append(
            {
                "rm": rm,
                "strategy": strategy,
                "budget": budget,
                "seeds": len(by_seed),
                "per_label": _ci(t_interval(per_label)),
                "per_decided": _ci(t_interval(per_decided)) if per_decided else None,
            }
        )
    spearman = []
    for (rm, s), v in sorted(pools.items()):
        x = np.array([r["pvar"] for r in v])
        y = np.array([r["grad_norm"] for r in v])
        if len(v) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        rho = float(stats.spearmanr(x, y).statistic)
        ci = stats.bootstrap(
            (x, y),
            lambda a, b: stats.spearmanr(a, b).statistic,
            paired=True,
            vectorized=False,
            n_resamples=n_boot,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        spearman.append(
            {"rm": rm, "seed": s, "n": len(v), "rho": rho, "low": float(ci.low), "high": float(ci.high)}
        )
    return {"picks": picks, "differences": diffs, "spearman": spearman}


def _paired(a: dict[int, list[dict]], b: dict[int, list[dict]]) -> dict:
    """PVar - random per seed (same seed index), t intervals: norm per label and per decided pair."""

    def per_label(v: list[dict]) -> float:
        return float(np.mean([x["grad_norm"] for x in v]))

    def per_decided(v: list[dict]) -> float | None:
        d = [x["grad_norm"] for x in v if x["decided"]]
        return float(np.mean(d)) if d else None

    seeds = sorted(set(a) & set(b))
    label = [per_label(a[s]) - per_label(b[s]) for s in seeds]
    dec = [
        pa - pb
        for s in seeds
        if (pa := per_decided(a[s])) is not None and (pb := per_decided(b[s])) is not None
    ]
    return {
        "seeds": len(seeds),
        "per_label": _ci(t_interval(label)) if label else None,
        "per_decided": _ci(t_interval(dec)) if dec else None,
    }


def markdown_lines(m: dict) -> list[str]:
    if not m or not (m["picks"] or m["spearman"]):
        return []

    def ci(d: dict | None) -> str:
        return "n/a" if d is None else f"{d['mean']:.4f} [{d['low']:.4f}, {d['high']:.4f}]"

    lines = [
        "## The mechanism: DPO gradient norm at the initial policy",
        "",
        "Per labelled pair of each arm's picks, the norm of the DPO gradient at the initial policy (every "
        "parameter; 0 for a tie, which DPO drops): per label bought and per decided pair, mean over each seed's "
        "picks, 95% t interval over seeds. More decided pairs and a larger gradient per decided pair are "
        "separate columns.",
        "",
        "| RM | strategy | labels | seeds | norm per label | norm per decided pair |",
        "|---|---|---|---|---|---|",
    ]
    for p in m["picks"]:
        lines.append(
            f"| {p['rm']} | {p['strategy']} | {p['budget']} | {p['seeds']} | {ci(p['per_label'])} | "
            f"{ci(p['per_decided'])} |"
        )
    if m.get("differences"):
        lines += [
            "",
            "PVar - random, paired by seed (95% t interval over seeds):",
            "",
            "| RM | labels | seeds | norm per label | norm per decided pair |",
            "|---|---|---|---|---|",
        ]
        for d in m["differences"]:
            lines.append(
                f"| {d['rm']} | {d['budget']} | {d['seeds']} | {ci(d['per_label'])} | {ci(d['per_decided'])} |"
            )
    if m["spearman"]:
        lines += [
            "",
            "Spearman correlation between a pool prompt's PVar and the gradient norm of the pair its RM shows "
            "(as if decided), 95% percentile bootstrap over pool prompts:",
            "",
            "| RM | seed | pool prompts | Spearman rho [95% CI] |",
            "|---|---|---|---|",
        ]
        for s in m["spearman"]:
            lines.append(
                f"| {s['rm']} | {s['seed']} | {s['n']} | {s['rho']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}] |"
            )
    return [*lines, ""]


def rm_id(cfg, data_dir: Path, rm: str, seed: int) -> str:
    """The reward_model id a sweep RM key and seed scored the pool under (loop/experiment/sweep/selection_rms.py)."""
    from loop.experiment.standin import standin_id
    from loop.experiment.sweep.profiles import LEARNED
    from loop.experiment.sweep.selection_rms import learned_rm_dir

    if rm == LEARNED:
        return str(Path(cfg.reward.model)) if seed == 0 else str(learned_rm_dir(data_dir, seed))
    return standin_id(float(rm.removeprefix("standin-")), seed)


def collect(
    cfg, uow, data_dir: Path, facts: dict, seeds: Sequence[int], *, pool: bool = True, say=print
) -> list[dict]:
    """Rows for the curve RM's largest-budget cells of these seeds (their picks) and, with pool, its pool
    pairs; the gradient norms computed with the initial policy."""
    from loop.acquisition.pvar import preference_variance
    from loop.experiment.sweep.cells import Cell
    from loop.ml.dpo_gradient import initial_gradient_norms
    from loop.rounds.pairing import best_and_worst
    from storage.repositories import rounds as round_repo
    from storage.repositories.checkpoints import initial_checkpoint_id
    from storage.repositories.items import decided_pairs_of_round
    from storage.repositories.prompts import prompt_texts
    from storage.repositories.scores import reward_scores_for
    from storage.statuses import Choice

    prof = facts["profile"]
    rm, top = prof["curve_rm"], max(prof["budgets"])
    initial = initial_checkpoint_id(cfg.policy.model)
    todo: list[tuple[dict, str, str, str]] = []  # (row, prompt, a, b) whose norm is computed
    rows: list[dict] = []
    with uow() as session:
        for s in seeds:
            rid = rm_id(cfg, data_dir, rm, s)
            scores = reward_scores_for(session, initial, rid)
            pvar = {p: float(preference_variance([[x for _, x in v]])[0]) for p, v in scores.items()}
            for rnd in round_repo.all_rounds(session):
                c = Cell.parse(rnd.arm)
                if rnd.number != 1 or c is None or (c.rm, c.seed, c.budget, c.label) != (rm, s, top, c.kind):
                    continue
                for r in decided_pairs_of_round(session, rnd.id, include_ties=True):
                    item = r.AnnotationItem
                    decided = int(item.decision in (Choice.A, Choice.B))
                    row = {"kind": "pick", "cell": c.arm, "rm": rm, "seed": s, "strategy": str(c.strategy),
                           "budget": top, "prompt": item.prompt_id, "pvar": repr(pvar.get(item.prompt_id, float("nan"))),
                           "decided": decided, "grad_norm": repr(0.0)}  # fmt: skip
                    rows.append(row)
                    if decided:
                        todo.append((row, r.prompt, r.text_a, r.text_b))
            if pool:
                pairs = best_and_worst(session, sorted(pvar), initial, rid)
                texts = prompt_texts(session, sorted(pairs))
                for pid, (best, worst) in sorted(pairs.items()):
                    row = {"kind": "pool", "cell": "", "rm": rm, "seed": s, "strategy": "", "budget": 0,
                           "prompt": pid, "pvar": repr(pvar[pid]), "decided": 1, "grad_norm": ""}  # fmt: skip
                    rows.append(row)
                    todo.append((row, texts[pid], best.text, worst.text))
    say(f"[mechanism] {len(todo)} gradient norms to compute")
    norms = initial_gradient_norms(
        cfg.policy.model,
        [t[1] for t in todo],
        [t[2] for t in todo],
        [t[3] for t in todo],
        beta=cfg.training.beta,
    )
    for (row, *_), n in zip(todo, norms, strict=True):
        row["grad_norm"] = repr(float(n))
    return rows
