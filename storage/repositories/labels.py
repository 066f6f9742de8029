"""Repository for labels: every version of every annotator's answer (append-only), and the versions each
item's decision was made from. Takes a Session and never commits.

A pull never updates or deletes an answer: a changed answer is a new version. An item's decision links the
versions it used (decision_labels): the latest version of each answer while its round collects, frozen when
collection ends. Everything about a closed round reads those links; later versions are late answers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from storage.db import in_chunks, select_in
from storage.models import AnnotationItem, DecisionLabel, Label, Round, utcnow
from storage.statuses import Choice, RoundStatus


@dataclass(frozen=True)
class LabelRow:
    """One version of an annotator's answer (storage.models.Label)."""

    item_id: str
    annotator: str  # username when pulled
    choice: Choice  # our orientation
    rationale: str | None
    submitted_at: datetime | None  # Argilla's updated_at of the response
    annotator_id: str | None = None  # Argilla user id; None: stored before answers were keyed by it
    version: int = 1
    response_id: str | None = None
    id: int | None = None  # None until stored
    answered_at: datetime | None = None  # Argilla's inserted_at of the response (None: stored before 0013)

    @property
    def key(self) -> str:
        """Who gave the answer: the Argilla user id, or the username of a row stored before 0011."""
        return self.annotator_id if self.annotator_id is not None else legacy_key(self.annotator)


def legacy_key(annotator: str) -> str:
    """The answer key of a label stored without an Argilla user id (Argilla user ids are UUIDs)."""
    return f"@{annotator}"


_COLUMNS = (
    Label.item_id,
    Label.annotator,
    Label.choice,
    Label.rationale,
    Label.submitted_at,
    Label.annotator_id,
    Label.version,
    Label.response_id,
    Label.id,
    Label.answered_at,
)


def _rows(session: Session, stmt: Select) -> list[LabelRow]:
    """LabelRows of a select over _COLUMNS (plain rows: loading ORM objects costs ~5x for nothing here)."""
    return [LabelRow(*row) for row in session.execute(stmt)]


def latest_only() -> object:
    """WHERE clause on Label: the row is the newest version of its answer (the rows an answer count counts)."""
    newer = aliased(Label)
    return ~exists().where(
        and_(
            newer.item_id == Label.item_id,
            newer.annotator_id == Label.annotator_id,
            newer.version > Label.version,
        )
    )


def labels_of(session: Session, round_id: int | None = None) -> dict[tuple[str, str], LabelRow]:
    """The latest version of every stored answer keyed by (item id, LabelRow.key), of one round or all."""
    stmt: Select = select(*_COLUMNS).order_by(Label.version)
    if round_id is not None:
        stmt = stmt.join(AnnotationItem, AnnotationItem.id == Label.item_id).where(
            AnnotationItem.round_id == round_id
        )
    return {(r.item_id, r.key): r for r in _rows(session, stmt)}


def add_label_versions(session: Session, rows: Sequence[LabelRow]) -> int:
    """Append answer versions; never updates or deletes a stored one (a version stored already, same item,
    user and number, is left as it is). Returns rows sent."""
    from storage.upsert import upsert

    payload = [
        {
            "item_id": r.item_id,
            "annotator": r.annotator,
            "annotator_id": r.annotator_id,
            "version": r.version,
            "response_id": r.response_id,
            "choice": r.choice,
            "rationale": r.rationale,
            "submitted_at": r.submitted_at,
            "answered_at": r.answered_at,
            "stored_at": utcnow(),
        }
        for r in rows
    ]
    return upsert(session, Label, payload, constraint="uq_labels_item_annotator_version")


def claim_legacy_labels(session: Session, claims: Iterable[tuple[str, str, str]]) -> int:
    """(item id, username, Argilla user id): give the rows stored before answers were keyed by user id the
    id of the user who answers that item under that username now (the answers themselves stay as they are)."""
    n = 0
    for item_id, annotator, annotator_id in claims:
        session.execute(
            update(Label)
            .where(Label.item_id == item_id, Label.annotator == annotator, Label.annotator_id.is_(None))
            .values(annotator_id=annotator_id)
        )
        n += 1
    return n


def decision_links(session: Session, item_ids: Sequence[str]) -> dict[str, set[int]]:
    """{item id: ids of the label versions its decision was made from}."""
    rows = select_in(
        session,
        lambda chunk: select(DecisionLabel.item_id, DecisionLabel.label_id).where(
            DecisionLabel.item_id.in_(chunk)
        ),
        item_ids,
    )
    out: dict[str, set[int]] = {}
    for item_id, label_id in rows:
        out.setdefault(item_id, set()).add(label_id)
    return out


def link_latest(
    session: Session,
    item_ids: Iterable[str],
    latest: Mapping[tuple[str, str], LabelRow],
    excluded: Collection[str] = frozenset(),
) -> int:
    """Link each item's decision to the latest version of each of its answers where that changed (links only:
    no answer is touched); the answers of `excluded` usernames are linked as not counted (export shows them,
    flagged). Only for items of rounds that still collect: a closed round's links are what it was decided and
    trained on. Returns the items relinked."""
    wanted: dict[str, set[tuple[int, bool]]] = {i: set() for i in item_ids}
    for (item_id, _key), row in latest.items():
        if item_id in wanted and row.id is not None:
            wanted[item_id].add((row.id, row.annotator not in excluded))
    current = _links(session, list(wanted))
    changed = [i for i, ids in wanted.items() if ids != current.get(i, set())]
    for chunk in in_chunks(changed):
        session.execute(delete(DecisionLabel).where(DecisionLabel.item_id.in_(chunk)))
    rows = [
        {"item_id": i, "label_id": lid, "counted": counted}
        for i in changed
        for lid, counted in sorted(wanted[i])
    ]
    if rows:
        session.execute(insert(DecisionLabel), rows)
    return len(changed)


def _links(session: Session, item_ids: Sequence[str]) -> dict[str, set[tuple[int, bool]]]:
    rows = select_in(
        session,
        lambda chunk: select(DecisionLabel.item_id, DecisionLabel.label_id, DecisionLabel.counted).where(
            DecisionLabel.item_id.in_(chunk)
        ),
        item_ids,
    )
    out: dict[str, set[tuple[int, bool]]] = {}
    for item_id, label_id, counted in rows:
        out.setdefault(item_id, set()).add((label_id, bool(counted)))
    return out


def decided_choices(session: Session, item_ids: Sequence[str]) -> dict[str, list[str]]:
    """{item id: choices of the label versions its decision was made from (counted ones: an excluded
    annotator's answer is linked but did not count)}."""
    rows = select_in(
        session,
        lambda chunk: (
            select(DecisionLabel.item_id, Label.choice)
            .join(Label, Label.id == DecisionLabel.label_id)
            .where(DecisionLabel.item_id.in_(chunk), DecisionLabel.counted)
        ),
        item_ids,
    )
    out: dict[str, list[str]] = {}
    for item_id, choice in rows:
        out.setdefault(item_id, []).append(choice)
    return out


def label_choices(session: Session) -> list[tuple[int, str, str, str]]:
    """(round id, item id, annotator, choice) of the label versions each item's decision was made from (a
    closed round's stay what it was decided on; later versions are late answers, see late_answers)."""
    stmt = (
        select(AnnotationItem.round_id, Label.item_id, Label.annotator, Label.choice)
        .join(DecisionLabel, DecisionLabel.label_id == Label.id)
        .join(AnnotationItem, AnnotationItem.id == Label.item_id)
        .where(DecisionLabel.counted)
    )
    return [tuple(row) for row in session.execute(stmt).all()]


@dataclass(frozen=True)
class LateAnswer:
    """An answer's newest version that the decision of its item did not use: given (or changed) after the
    item's round stopped collecting. Stored, shown, never counted."""

    round_id: int
    arm: str
    round_number: int
    label: LabelRow


def late_answers(session: Session, round_id: int | None = None) -> list[LateAnswer]:
    """The late answers of the rounds that no longer collect (of one round, or of all), by round and item.
    Cancelled and failed rounds trained nothing: an answer there is not late for anything (and one given
    before the cancel but pulled after it was never linked to a decision)."""
    used = select(DecisionLabel.label_id).where(DecisionLabel.label_id == Label.id)
    stmt = (
        select(*_COLUMNS, Round.id, Round.arm, Round.number)
        .join(AnnotationItem, AnnotationItem.id == Label.item_id)
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(
            Round.status.not_in([s for s in RoundStatus if s.collects or s.frees_prompts]),
            latest_only(),
            ~used.exists(),
        )
        .order_by(Round.id, Label.item_id, Label.annotator)
    )
    if round_id is not None:
        stmt = stmt.where(Round.id == round_id)
    return [LateAnswer(*row[-3:], LabelRow(*row[:-3])) for row in session.execute(stmt)]


@dataclass(frozen=True)
class ShownAnswer:
    """An answer's latest version with what the annotator was shown: for per-annotator reliability."""

    round_id: int
    arm: str
    round_number: int
    item_id: str
    annotator: str  # username when pulled
    choice: Choice  # our orientation (a = generation_a), whatever side it was shown on
    swapped: bool  # generation_b was shown as response A
    answered_at: datetime | None  # when first given (Argilla's inserted_at; before 0013 its updated_at)


def shown_answers(session: Session, round_id: int | None = None) -> list[ShownAnswer]:
    """The latest version of every answer (of one round or all) with the item's A/B swap, by round and item."""
    stmt = (
        select(
            Round.id,
            Round.arm,
            Round.number,
            Label.item_id,
            Label.annotator,
            Label.choice,
            AnnotationItem.swapped,
            func.coalesce(Label.answered_at, Label.submitted_at),
        )
        .join(AnnotationItem, AnnotationItem.id == Label.item_id)
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(latest_only())
        .order_by(Round.id, Label.item_id, Label.annotator)
    )
    if round_id is not None:
        stmt = stmt.where(Round.id == round_id)
    return [ShownAnswer(*row) for row in session.execute(stmt)]
