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
from storage.statuses import RoundStatus

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


def cell_outcome(cell: Cell, rounds: list) -> tuple[str, str | None]:
    """(status, the policy the cell ends with; None: nothing to evaluate) from its rounds (number, status,
    policy_in, policy_out), sorted by number. A cell of several rounds counts only when every round is done:
    otherwise its status names the first round that is not, and it has no policy (a round-1 checkpoint is not
    the two-round arm's result). A round that trained nothing leaves the policy it started from."""
    if cell.rounds == 1:
        (rnd,) = rounds
        trained = bool(rnd.policy_out) and rnd.policy_out != rnd.policy_in
        return str(rnd.status), rnd.policy_out if trained else None
    by_number = {r.number: r for r in rounds}
    for number in range(1, cell.rounds + 1):
        rnd = by_number.get(number)
        if rnd is None or rnd.status != RoundStatus.DONE:
            return f"round {number}: {'not run' if rnd is None else rnd.status}", None
    last = by_number[cell.rounds]
    trained = any(r.policy_out and r.policy_out != r.policy_in for r in rounds)
    return str(RoundStatus.DONE), (last.policy_out or last.policy_in) if trained else None


def collect_cells(session: Session, reference_id: str) -> tuple[list[CellResult], dict[str, float] | None]:
    """Every sweep cell in the database (arms that parse as cells), and the initial policy's means. A cell of
    several rounds: its label counts summed over its rounds, its outcome from cell_outcome."""
    ref = reference_means(session, reference_id)
    by_arm: dict[str, list] = {}
    for r in round_repo.all_rounds(session):
        if Cell.parse(r.arm):
            by_arm.setdefault(r.arm, []).append(r)
    counts = round_repo.round_counts(session, [r.id for rs in by_arm.values() for r in rs])
    out = []
    for arm, rounds in by_arm.items():
        rounds.sort(key=lambda r: r.number)
        cell = Cell.parse(arm)
        c = [counts.get(r.id, RoundCounts()) for r in rounds]
        status, policy = cell_outcome(cell, rounds)
        means, win, n_samples = None, None, None
        if policy is not None:
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
                status=status,
                labels=sum(x.labels for x in c),
                decided_ab=sum(x.decided_ab for x in c),
                ties=sum(x.ties for x in c),
                trained=policy is not None,
                means=means,
                win_rate=win,
                wall_s=sum(walls) if len(walls) == len(rounds) else None,
                n_samples=n_samples,
            )
        )
    return out, ref
