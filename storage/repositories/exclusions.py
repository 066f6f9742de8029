"""Repository for annotator exclusions (annotator_exclusions): the periods in which an annotator's answers do not
count in decisions. Takes a Session; never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import AnnotatorExclusion, utcnow


@dataclass(frozen=True)
class Exclusion:
    annotator: str
    since: datetime
    by: str
    reason: str | None


def current_exclusion(session: Session, annotator: str) -> AnnotatorExclusion | None:
    return session.scalar(
        select(AnnotatorExclusion).where(
            AnnotatorExclusion.annotator == annotator, AnnotatorExclusion.included_at.is_(None)
        )
    )


def add_exclusion(session: Session, annotator: str, actor: str, reason: str | None) -> AnnotatorExclusion:
    row = AnnotatorExclusion(annotator=annotator, excluded_by=actor, reason=reason, excluded_at=utcnow())
    session.add(row)
    session.flush()
    return row


def end_exclusion(session: Session, annotator: str, actor: str) -> AnnotatorExclusion | None:
    """End the annotator's current exclusion; None when they are not excluded."""
    row = current_exclusion(session, annotator)
    if row is not None:
        row.included_at, row.included_by = utcnow(), actor
    return row


def exclusions(session: Session) -> list[Exclusion]:
    """The annotators excluded now, by name (what `status` lists)."""
    rows = session.scalars(
        select(AnnotatorExclusion)
        .where(AnnotatorExclusion.included_at.is_(None))
        .order_by(AnnotatorExclusion.annotator)
    )
    return [Exclusion(r.annotator, r.excluded_at, r.excluded_by, r.reason) for r in rows]


def excluded_names(session: Session) -> frozenset[str]:
    """Usernames whose answers do not count in the decisions of rounds that still collect."""
    return frozenset(e.annotator for e in exclusions(session))
