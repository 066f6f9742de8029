"""Repository for DPO's implicit reward margins per trained-on label (storage.models.DpoMargin). Takes a
Session; never commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import AnnotationItem, DpoMargin


def rounds_with_audit(session: Session, round_ids: Sequence[int]) -> bool:
    """Whether any of these rounds holds an audit item (only then are margins worth their forward passes)."""
    stmt = select(func.count()).where(AnnotationItem.round_id.in_(round_ids), AnnotationItem.audit.is_(True))
    return bool(session.scalar(stmt))


def has_margins(session: Session, checkpoint_id: str) -> bool:
    return session.scalar(select(func.count()).where(DpoMargin.checkpoint_id == checkpoint_id)) > 0


def add_margins(session: Session, checkpoint_id: str, margins: Mapping[str, float]) -> None:
    session.add_all(
        DpoMargin(item_id=item_id, checkpoint_id=checkpoint_id, margin=float(m))
        for item_id, m in margins.items()
    )
    session.flush()


def latest_margins(session: Session) -> dict[str, float]:
    """item id -> its margin under the newest checkpoint that trained on it (the highest row id)."""
    newest = select(func.max(DpoMargin.id)).group_by(DpoMargin.item_id)
    rows = session.execute(select(DpoMargin.item_id, DpoMargin.margin).where(DpoMargin.id.in_(newest)))
    return {item_id: margin for item_id, margin in rows}
