"""Repository for evaluations (win rates of a checkpoint against a reference under a judge). Takes a Session;
never commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Evaluation


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
