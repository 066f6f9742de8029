"""Repository for training runs (one per round and training-data hash). Takes a Session; never commits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Round, TrainingRun
from storage.statuses import TrainingRunStatus


def add_finished_run(
    session: Session,
    round_id: int,
    *,
    data_hash: str,
    label_count: int,
    checkpoint_id: str,
    settings: dict[str, Any],
    metrics: dict[str, Any],
) -> TrainingRun:
    """Record a done training run of the round on this data (finished now), with the checkpoint it produced."""
    row = TrainingRun(
        round_id=round_id,
        data_hash=data_hash,
        label_count=label_count,
        status=TrainingRunStatus.DONE,
        checkpoint_id=checkpoint_id,
        settings=settings,
        metrics=metrics,
        finished_at=datetime.now(UTC),
    )
    session.add(row)
    return row


def finished_run(session: Session, round_id: int, data_hash: str) -> TrainingRun | None:
    """The done run of this round on exactly this training data, if any (training is idempotent on it)."""
    return session.scalar(
        select(TrainingRun).where(
            TrainingRun.round_id == round_id,
            TrainingRun.data_hash == data_hash,
            TrainingRun.status == TrainingRunStatus.DONE,
        )
    )


def latest_finished_run(session: Session, round_id: int) -> TrainingRun | None:
    return session.scalar(
        select(TrainingRun)
        .where(TrainingRun.round_id == round_id, TrainingRun.status == TrainingRunStatus.DONE)
        .order_by(TrainingRun.id.desc())
        .limit(1)
    )


def latest_finished_run_of(session: Session, arm: str, number: int) -> TrainingRun | None:
    """The newest done run of round `number` of `arm`."""
    return session.scalar(
        select(TrainingRun)
        .join(Round, Round.id == TrainingRun.round_id)
        .where(Round.arm == arm, Round.number == number, TrainingRun.status == TrainingRunStatus.DONE)
        .order_by(TrainingRun.id.desc())
        .limit(1)
    )
