"""The experiment's results, read back from the database (the single source of truth) into a JSON-ready dict,
written atomically, and printed as a table (one row per arm per round)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from loop.config import Config
from storage.models import Evaluation, Round
from storage.repositories import rounds as round_repo
from storage.repositories.checkpoints import initial_checkpoint_id
from storage.repositories.evaluations import latest_evaluation
from storage.repositories.rounds import RoundCounts
from storage.repositories.training_runs import latest_finished_run

FORMAT_VERSION = 1


# Evaluation.details keys copied into the results: the mean judge score of the policy's and the reference's
# responses (verifier: share of constraints met) with bootstrap CIs over prompts, and their paired difference.
# Absent (None) for evaluations stored before evaluation_samples.
DETAIL_KEYS = (
    "samples_per_prompt",
    "policy_mean",
    "policy_ci_low",
    "policy_ci_high",
    "reference_mean",
    "reference_ci_low",
    "reference_ci_high",
    "mean_diff",
    "mean_diff_ci_low",
    "mean_diff_ci_high",
)


def evaluation_result(ev: Evaluation) -> dict:
    """An evaluation as stored; evaluation_id leads to its samples (storage.repositories.evaluations)."""
    details = ev.details or {}
    return {
        "evaluation_id": ev.id,
        "judge": ev.judge,
        "n_prompts": ev.n_prompts,
        "win_rate": ev.win_rate,
        "ci_low": ev.ci_low,
        "ci_high": ev.ci_high,
        **{key: details.get(key) for key in DETAIL_KEYS},
    }


def round_result(session: Session, rnd: Round, reference: str, c: RoundCounts) -> dict:
    """One round of one arm: its counts (storage.repositories.rounds.round_counts), training and evaluation as stored."""
    run = latest_finished_run(session, rnd.id)
    trained = run is not None and rnd.policy_out == run.checkpoint_id
    ev = latest_evaluation(session, rnd.policy_out, reference) if trained else None
    start, end = rnd.created_at, rnd.finished_at
    return {
        "number": rnd.number,
        "round_id": rnd.id,
        "status": rnd.status,
        "reason": rnd.reason,
        "strategy": rnd.strategy,
        "budget": rnd.budget,
        "seed": rnd.seed,
        "policy_in": rnd.policy_in,
        "policy_out": rnd.policy_out,
        "items": c.items,
        "labels": c.labels,
        "decided_ab": c.decided_ab,
        "ties": c.ties,
        "undecided": c.undecided,
        "train_pairs": run.label_count if trained else None,
        "train_steps": (run.metrics or {}).get("steps") if trained else None,
        "evaluation": None if ev is None else evaluation_result(ev),
        "wall_s": (end - start).total_seconds() if start and end else None,
    }


def collect_results(session: Session, cfg: Config, arms: Sequence, meta: dict) -> dict:
    """Every arm's rounds with cumulative label counts, plus the experiment's settings."""
    reference = initial_checkpoint_id(cfg.policy.model)
    out: dict = {
        "format": FORMAT_VERSION,
        "written_at": datetime.now(UTC).isoformat(),
        "reward_model": cfg.reward.model,
        "policy": cfg.policy.model,
        "reference_checkpoint": reference,
        **meta,
        "arms": {},
    }
    for arm in arms:
        rounds = round_repo.all_rounds(session, arm.name)
        counts = round_repo.round_counts(session, [r.id for r in rounds])
        rows, cumulative = [], 0
        for rnd in rounds:
            row = round_result(session, rnd, reference, counts.get(rnd.id, RoundCounts()))
            cumulative += row["labels"]
            row["cumulative_labels"] = cumulative
            rows.append(row)
        out["arms"][arm.name] = {"strategy": arm.strategy, "seed": arm.seed, "rounds": rows}
    return out


def write_results(results: dict, path: Path) -> Path:
    """Write JSON atomically: a temp file in the same directory, fsynced, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


COLUMNS = (
    "arm",
    "round",
    "status",
    "labels",
    "cum",
    "a/b",
    "ties",
    "pairs",
    "steps",
    "win rate [95% CI]",
    "judge mean [95% CI]",
    "wall s",
)


def table_rows(results: dict) -> list[list[str]]:
    rows = []
    for name, arm in results["arms"].items():
        for r in arm["rounds"]:
            ev = r["evaluation"]
            win = f"{ev['win_rate']:.3f} [{ev['ci_low']:.3f}, {ev['ci_high']:.3f}]" if ev else "-"
            mean = _mean_text(ev) if ev else "-"
            rows.append(
                [
                    name,
                    str(r["number"]),
                    r["status"],
                    str(r["labels"]),
                    str(r["cumulative_labels"]),
                    str(r["decided_ab"]),
                    str(r["ties"]),
                    "-" if r["train_pairs"] is None else str(r["train_pairs"]),
                    "-" if r["train_steps"] is None else str(r["train_steps"]),
                    win,
                    mean,
                    "-" if r["wall_s"] is None else f"{r['wall_s']:.1f}",
                ]
            )
    return rows


def _mean_text(ev: dict) -> str:
    mean, low, high = ev.get("policy_mean"), ev.get("policy_ci_low"), ev.get("policy_ci_high")
    if mean is None:
        return "-"
    return f"{mean:.3f}" if low is None or high is None else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def format_table(results: dict) -> str:
    rows = [list(COLUMNS), *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
