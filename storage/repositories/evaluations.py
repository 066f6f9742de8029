"""Repository for evaluations (win rates of a checkpoint against a reference under a judge) and their
evidence, one evaluation_samples row per sampled response. Takes a Session; never commits.

An evaluation's reference-side rows may belong to an earlier evaluation (Evaluation.reference_samples_id):
the reference was sampled and judged once for every checkpoint evaluated the same way. The functions here
resolve that, so callers see each evaluation's own policy rows and the reference rows it used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from storage.errors import PvarLoopError
from storage.models import Evaluation, EvaluationSample

POLICY, REFERENCE = "policy", "reference"
SIDES = (POLICY, REFERENCE)


def all_evaluations(session: Session) -> list[Evaluation]:
    return list(session.scalars(select(Evaluation)))


def find_evaluation(session: Session, checkpoint_id: str, reference_id: str, judge: str) -> Evaluation | None:
    """The stored evaluation of (checkpoint, reference, judge): its natural key."""
    return session.scalar(
        select(Evaluation).where(
            Evaluation.checkpoint_id == checkpoint_id,
            Evaluation.reference_id == reference_id,
            Evaluation.judge == judge,
        )
    )


def latest_evaluation(session: Session, checkpoint_id: str, reference_id: str) -> Evaluation | None:
    """The newest evaluation of the checkpoint against the reference, under any judge."""
    return session.scalar(
        select(Evaluation)
        .where(Evaluation.checkpoint_id == checkpoint_id, Evaluation.reference_id == reference_id)
        .order_by(Evaluation.id.desc())
        .limit(1)
    )


def evaluations_of(session: Session, checkpoint_id: str) -> list[Evaluation]:
    """Every stored evaluation of one checkpoint, oldest first."""
    return list(
        session.scalars(
            select(Evaluation).where(Evaluation.checkpoint_id == checkpoint_id).order_by(Evaluation.id)
        )
    )


def add_evaluation(
    session: Session,
    *,
    checkpoint_id: str,
    reference_id: str,
    judge: str,
    n_prompts: int,
    win_rate: float,
    ci_low: float,
    ci_high: float,
    details: dict[str, Any],
    reference_key: str | None = None,
    reference_samples_id: int | None = None,
) -> Evaluation:
    """Store one evaluation of (checkpoint, reference, judge), a win rate with its interval; returns the row
    with its id (flushed), which its samples (add_samples) refer to. `reference_key` describes how the reference
    was sampled and judged; `reference_samples_id` names the earlier evaluation whose reference rows it reuses."""
    row = Evaluation(
        checkpoint_id=checkpoint_id,
        reference_id=reference_id,
        judge=judge,
        n_prompts=n_prompts,
        win_rate=win_rate,
        ci_low=ci_low,
        ci_high=ci_high,
        reference_key=reference_key,
        reference_samples_id=reference_samples_id,
        details=details,
    )
    session.add(row)
    session.flush()
    return row


class EvaluationSamplesError(PvarLoopError, ValueError):
    """Evaluation samples that cannot be stored or read as asked (unknown evaluation or side)."""


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise EvaluationSamplesError(f"evaluation samples: side must be one of {SIDES}, got {side!r}")


def add_samples(session: Session, evaluation_id: int, rows: Iterable[Mapping[str, Any]]) -> int:
    """Store sampled responses of one evaluation. Each row: prompt_id, side, sample_index, seed, text,
    n_tokens, score. Returns how many were added."""
    objects = []
    for row in rows:
        _check_side(row["side"])
        objects.append(EvaluationSample(evaluation_id=evaluation_id, **row))
    session.add_all(objects)
    session.flush()
    return len(objects)


def samples_owner(session: Session, evaluation_id: int, side: str) -> int:
    """The evaluation whose rows hold `side` of this evaluation (reference rows may be an earlier one's)."""
    _check_side(side)
    ev = session.get(Evaluation, evaluation_id)
    if ev is None:
        raise EvaluationSamplesError(f"no evaluation {evaluation_id}; see `pvar-loop status`")
    if side == REFERENCE and ev.reference_samples_id is not None:
        return ev.reference_samples_id
    return ev.id


def _side_rows(session: Session, evaluation_id: int, side: str):
    owner = samples_owner(session, evaluation_id, side)
    return select(EvaluationSample).where(
        EvaluationSample.evaluation_id == owner, EvaluationSample.side == side
    )


def evaluation_samples(session: Session, evaluation_id: int) -> list[EvaluationSample]:
    """Every sampled response the evaluation rests on, for export and audit: its policy rows, then the
    reference rows it used (its own or the earlier evaluation's), each by prompt id and sample index."""
    out: list[EvaluationSample] = []
    for side in SIDES:
        stmt = _side_rows(session, evaluation_id, side)
        out += session.scalars(stmt.order_by(EvaluationSample.prompt_id, EvaluationSample.sample_index)).all()
    return out


def per_prompt_means(session: Session, evaluation_id: int, side: str = POLICY) -> dict[str, float]:
    """{prompt id: mean judge score of that side's samples} of one evaluation (empty for an evaluation
    stored before samples were kept)."""
    owner = samples_owner(session, evaluation_id, side)
    rows = session.execute(
        select(EvaluationSample.prompt_id, func.avg(EvaluationSample.score))
        .where(EvaluationSample.evaluation_id == owner, EvaluationSample.side == side)
        .group_by(EvaluationSample.prompt_id)
    ).all()
    return {prompt_id: float(mean) for prompt_id, mean in rows}


def per_prompt_sample_counts(session: Session, evaluation_id: int, side: str = POLICY) -> dict[str, int]:
    """{prompt id: number of that side's samples} of one evaluation (what each per-prompt mean rests on)."""
    owner = samples_owner(session, evaluation_id, side)
    rows = session.execute(
        select(EvaluationSample.prompt_id, func.count())
        .where(EvaluationSample.evaluation_id == owner, EvaluationSample.side == side)
        .group_by(EvaluationSample.prompt_id)
    ).all()
    return {prompt_id: int(n) for prompt_id, n in rows}


def cached_reference(session: Session, reference_key: str) -> tuple[int, list[EvaluationSample]] | None:
    """(owner evaluation id, its reference rows) of the oldest evaluation that sampled the reference the way
    `reference_key` describes; None when none did (the reference must be sampled)."""
    owner = session.scalar(
        select(Evaluation.id)
        .where(Evaluation.reference_key == reference_key, Evaluation.reference_samples_id.is_(None))
        .order_by(Evaluation.id)
        .limit(1)
    )
    if owner is None:
        return None
    rows = session.scalars(
        select(EvaluationSample)
        .where(EvaluationSample.evaluation_id == owner, EvaluationSample.side == REFERENCE)
        .order_by(EvaluationSample.prompt_id, EvaluationSample.sample_index)
    ).all()
    return (owner, list(rows)) if rows else None


def delete_evaluations(session: Session, evaluation_ids: Iterable[int]) -> None:
    """Delete evaluations with their samples. Reference rows that surviving evaluations reuse move to the
    oldest of them first, which becomes their owner, so no evaluation loses its evidence."""
    ids = set(evaluation_ids)
    if not ids:
        return
    for owner in sorted(ids):
        heirs = session.scalars(
            select(Evaluation.id)
            .where(Evaluation.reference_samples_id == owner, Evaluation.id.not_in(ids))
            .order_by(Evaluation.id)
        ).all()
        if not heirs:
            continue
        heir = heirs[0]
        session.execute(
            update(EvaluationSample)
            .where(EvaluationSample.evaluation_id == owner, EvaluationSample.side == REFERENCE)
            .values(evaluation_id=heir)
        )
        session.execute(
            update(Evaluation).where(Evaluation.id.in_(heirs[1:])).values(reference_samples_id=heir)
        )
        session.execute(update(Evaluation).where(Evaluation.id == heir).values(reference_samples_id=None))
    session.execute(delete(EvaluationSample).where(EvaluationSample.evaluation_id.in_(ids)))
    session.execute(
        update(Evaluation).where(Evaluation.reference_samples_id.in_(ids)).values(reference_samples_id=None)
    )
    session.execute(delete(Evaluation).where(Evaluation.id.in_(ids)))
