"""Read a sweep back from the database: per cell, its label counts and the per-eval-prompt mean judge score of
its policy (the stored evaluation samples), so every figure of the report can be recomputed from the evidence.

A cell whose round trained no checkpoint (no a/b decision among its labels) has no evaluation of its own: it is
excluded from the score statistics (the report counts such cells), not scored with the initial policy's
reference-side samples, which are drawn with other sampling seeds than every evaluated cell's policy side."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from loop.experiment.sweep.cells import Cell
from storage.repositories import rounds as round_repo
from storage.repositories.evaluations import (
    find_evaluation,
    per_prompt_means,
    per_prompt_sample_counts,
)
from storage.repositories.rounds import RoundCounts

JUDGE = "verifier"


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    status: str
    labels: int
    decided_ab: int
    ties: int
    trained: bool
    means: (
        dict[str, float] | None
    )  # eval prompt id -> mean judge score of the cell's policy; None: not evaluated
    win_rate: float | None
    wall_s: float | None
    n_samples: dict[str, int] | None = None  # eval prompt id -> samples behind its mean


def reference_samples(session: Session, reference_id: str) -> dict[str, int] | None:
    for rnd in round_repo.all_rounds(session):
        if rnd.policy_out and rnd.policy_out != reference_id:
            ev = find_evaluation(session, rnd.policy_out, reference_id, JUDGE)
            if ev is not None:
                return per_prompt_sample_counts(session, ev.id, side="reference")
    return None


def reference_means(session: Session, reference_id: str) -> dict[str, float] | None:
    """The initial policy's per-prompt means, from any evaluation against it (they share the cached samples)."""
    for rnd in round_repo.all_rounds(session):
        if rnd.policy_out and rnd.policy_out != reference_id:
            ev = find_evaluation(session, rnd.policy_out, reference_id, JUDGE)
            if ev is not None:
                return per_prompt_means(session, ev.id, side="reference")
    return None


def collect_cells(session: Session, reference_id: str) -> tuple[list[CellResult], dict[str, float] | None]:
    """Every sweep cell in the database (arms that parse as cells), and the initial policy's means. A cell of
    several rounds: its label counts summed over its rounds, its status, policy and evaluation its last
    round's (a round that trained nothing leaves the policy it started from)."""
    ref = reference_means(session, reference_id)
    by_arm: dict[str, list] = {}
    for r in round_repo.all_rounds(session):
        if Cell.parse(r.arm):
            by_arm.setdefault(r.arm, []).append(r)
    counts = round_repo.round_counts(session, [r.id for rs in by_arm.values() for r in rs])
    out = []
    for arm, rounds in by_arm.items():
        rounds.sort(key=lambda r: r.number)
        cell, last = Cell.parse(arm), rounds[-1]
        c = [counts.get(r.id, RoundCounts()) for r in rounds]
        policy = last.policy_out or last.policy_in
        trained = bool(policy) and policy != reference_id and any(r.policy_out for r in rounds)
        means, win, n_samples = None, None, None
        if trained:
            ev = find_evaluation(session, policy, reference_id, JUDGE)
            if ev is not None:
                means, win = per_prompt_means(session, ev.id, side="policy"), ev.win_rate
                n_samples = per_prompt_sample_counts(session, ev.id, side="policy")
        walls = [
            (r.finished_at - r.created_at).total_seconds() for r in rounds if r.created_at and r.finished_at
        ]
        out.append(
            CellResult(
                cell=cell,
                status=str(last.status)
                if last.number == cell.rounds
                else f"round {last.number}: {last.status}",
                labels=sum(x.labels for x in c),
                decided_ab=sum(x.decided_ab for x in c),
                ties=sum(x.ties for x in c),
                trained=trained,
                means=means,
                win_rate=win,
                wall_s=sum(walls) if len(walls) == len(rounds) else None,
                n_samples=n_samples,
            )
        )
    return out, ref
