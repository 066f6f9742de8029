"""A small synthetic sweep (no database, no models) and the committed evidence built from it: the per-prompt
table, its JSON twin (the run's facts) and the document `sweep report --from-table` makes of them. No real sweep
database exists in this repository (it is git-ignored), so the byte-for-byte regeneration test runs on this one;
`python -m tests.support.sweep_evidence` rewrites the committed files after a deliberate change of the report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from loop.acquisition.strategies import Strategy
from loop.experiment.sweep.cells import Cell, write_json
from loop.experiment.sweep.data import CellResult
from loop.experiment.sweep.profiles import PREREGISTERED

EVIDENCE = Path(__file__).parent / "sweep_evidence"
TABLE = EVIDENCE / "experiment-results.csv"
DOCUMENT = EVIDENCE / "experiment-results.md"
SEEDS = (0, 1, 2, 3)
PROMPTS = 24


def synthetic_results() -> tuple[list[CellResult], dict[str, float]]:
    """The pre-registered grid on 4 seeds: per-seed effects, per-prompt difficulty and 1-sample noise, in
    multiples of 1/4 as the verifier scores are; seed 3's PVar-at-32 cell decided nothing (not evaluated)."""
    rng = np.random.default_rng(22)
    difficulty = rng.normal(0.45, 0.15, PROMPTS)
    ref = {
        f"e{i:02d}": float(np.clip(np.round((difficulty[i] - 0.05) * 4) / 4, 0, 1)) for i in range(PROMPTS)
    }
    out = []
    for seed in SEEDS:
        seed_shift = rng.normal(0, 0.03)
        for strategy, budget, gain in (("pvar", 64, 0.06), ("random", 64, 0.04), ("pvar", 32, 0.035)):
            cell = Cell("learned", Strategy(strategy), seed, budget)
            decided = int(budget * (0.6 if strategy == "pvar" else 0.4) + rng.integers(-3, 4))
            scores = difficulty + gain + seed_shift + rng.normal(0, 0.2, PROMPTS)
            means = {f"e{i:02d}": float(np.clip(np.round(scores[i] * 4) / 4, 0, 1)) for i in range(PROMPTS)}
            out.append(
                CellResult(
                    cell=cell,
                    status="done",
                    labels=budget,
                    decided_ab=decided,
                    ties=budget - decided,
                    trained=True,
                    means=means,
                    win_rate=round(float(rng.uniform(0.5, 0.6)), 4),
                    wall_s=round(float(rng.uniform(150, 300)), 1),
                    n_samples=dict.fromkeys(means, 1),
                )
            )
    out[-1] = dataclasses.replace(
        out[-1], decided_ab=0, ties=32, trained=False, means=None, win_rate=None, n_samples=None
    )
    return out, ref


def synthetic_mechanism() -> list[dict]:
    """Gradient-norm rows: the 64-label cells' picks (ties 0) and two seeds' pool pairs, norm rising with PVar."""
    rng = np.random.default_rng(4)
    rows = []
    for seed in SEEDS:
        for strategy, share in (("pvar", 0.6), ("random", 0.4)):
            arm = Cell("learned", Strategy(strategy), seed, 64).arm
            for i in range(64):
                decided = int(rng.random() < share)
                pvar = float(rng.uniform(0.0, 0.2 if strategy == "pvar" else 0.1))
                norm = float(decided * (1 + 10 * pvar + rng.normal(0, 0.3)))
                rows.append(_mech("pick", arm, seed, strategy, 64, f"q{i:02d}", pvar, decided, norm))
    for seed in SEEDS[:2]:
        for i in range(40):
            pvar = float(rng.uniform(0.0, 0.2))
            rows.append(
                _mech("pool", "", seed, "", 0, f"q{i:02d}", pvar, 1, 1 + 10 * pvar + rng.normal(0, 0.5))
            )
    return rows


def _mech(kind, cell, seed, strategy, budget, prompt, pvar, decided, norm) -> dict:
    return {"kind": kind, "cell": cell, "rm": "learned", "seed": seed, "strategy": strategy, "budget": budget,
            "prompt": prompt, "pvar": repr(pvar), "decided": decided, "grad_norm": repr(float(norm))}  # fmt: skip


def facts() -> dict:
    w = PREREGISTERED.world
    return {
        "command": "pvar-loop sweep run --profile preregistered --jobs 2 --data-dir data/sweep-prereg",
        "data_dir_arg": "data/sweep-prereg",
        "machine": "synthetic (tests/support/sweep_evidence.py)",
        "policy": "synthetic",
        "profile": {
            "name": "synthetic",
            "n_train": w.n_train,
            "n_eval": PROMPTS,
            "k": w.k,
            "max_new_tokens": w.max_new_tokens,
            "budgets": list(PREREGISTERED.budgets),
            "seeds": list(SEEDS),
            "standins": [],
            "learned": True,
            "curve_rm": "learned",
            "samples_per_prompt": 1,
            "primary": PREREGISTERED.primary_facts(),
        },
        "rms": {"learned": {"measured": {str(s): {"agreement": 0.7 + s / 100, "pairs": 500} for s in SEEDS}}},
        "setup_s": 600.0,
        "wall_s": 4200.0,
    }


def write_evidence() -> None:
    from loop.experiment.sweep.mechanism import write_rows
    from loop.experiment.sweep.run import mechanism_table, report_from_table
    from loop.experiment.sweep.table import write_table

    results, ref = synthetic_results()
    write_table(TABLE, results, ref, dict.fromkeys(ref, 1))
    write_json(TABLE.with_suffix(".json"), {"facts": facts()})
    write_rows(mechanism_table(TABLE), synthetic_mechanism())
    report_from_table(TABLE, DOCUMENT, n_boot=500)


if __name__ == "__main__":
    write_evidence()
