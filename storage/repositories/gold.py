"""Repository for gold (honeypot) items: the operator's pairs, their placements in rounds' queues (gold
records) and the annotators' answers to them. Takes a Session and never commits.

Gold lives in its own tables, never in annotation_items or labels: nothing that decides items, trains, exports
or counts a round's figures reads these tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.db import select_in
from storage.models import GoldAnswerRow, GoldItem, GoldRecord, Round, utcnow
from storage.statuses import RoundStatus
from storage.upsert import upsert


@dataclass(frozen=True)
class GoldAnswer:
    """One annotator's answer to a gold item, in the gold item's own a/b (the displayed swap undone)."""

    annotator: str
    round_id: int
    gold_id: int
    expected: str  # 'a' | 'b' | 'tie'
    answer: str  # 'a' | 'b' | 'tie' | 'discard', in the gold item's own a/b
    shown_swapped: bool
    answered_at: datetime | None


@dataclass(frozen=True)
class GoldPlacement:
    """A gold record to push: where (annotator None = the shared dataset), its swap, place and texts."""

    id: str  # the record's external id
    gold_id: int
    round_id: int
    annotator: str | None
    swapped: bool
    priority: int
    argilla_record_id: str | None
    prompt: str
    response_a: str
    response_b: str
    source_id: str | None


@dataclass(frozen=True)
class GoldSummary:
    """A gold item with how often it was placed and answered (and answered as expected)."""

    id: int
    key: str  # content hash of prompt and pair
    prompt: str
    expected: str
    rationale: str | None
    source: str
    source_id: str | None
    shown: int  # gold records placed
    answers: int  # answers stored (discards included)
    correct: int  # answers equal to the expected one
    retired_at: datetime | None = None  # `gold retire`: no longer placed


def add_gold_items(session: Session, rows: Sequence[Mapping]) -> int:
    """Insert gold items (rows of GoldItem columns but id; a `key` already stored is left as it is). Returns
    how many were new."""
    have = known_gold_keys(session, [r["key"] for r in rows])
    new = [{**r, "created_at": utcnow()} for r in rows if r["key"] not in have]
    upsert(session, GoldItem, new, constraint="uq_gold_items_key")
    return len(new)


def known_gold_keys(session: Session, keys: Sequence[str]) -> set[str]:
    rows = select_in(session, lambda chunk: select(GoldItem.key).where(GoldItem.key.in_(chunk)), keys)
    return {key for (key,) in rows}


def stored_expected(session: Session, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    """{key: (gold item id, expected answer)} of the given content hashes already stored."""
    rows = select_in(
        session,
        lambda chunk: select(GoldItem.key, GoldItem.id, GoldItem.expected).where(GoldItem.key.in_(chunk)),
        keys,
    )
    return {key: (gold_id, str(expected)) for key, gold_id, expected in rows}


def gold_keys(session: Session) -> dict[int, str]:
    """{gold item id: its content hash} of the gold items in use (not retired: those are never placed again),
    in the order they were added."""
    stmt = select(GoldItem.id, GoldItem.key).where(GoldItem.retired_at.is_(None)).order_by(GoldItem.id)
    return dict(session.execute(stmt).all())


def retire_gold(session: Session, gold_id: int) -> GoldItem | None:
    """Stop placing a gold item (its records and answers stay); None when there is no such item. Retiring
    a retired item keeps its first time."""
    item = session.get(GoldItem, gold_id)
    if item is not None and item.retired_at is None:
        item.retired_at = utcnow()
        session.flush()
    return item


def gold_summaries(session: Session) -> list[GoldSummary]:
    shown = dict(session.execute(select(GoldRecord.gold_id, func.count()).group_by(GoldRecord.gold_id)).all())
    answers: dict[int, int] = {}
    correct: dict[int, int] = {}
    stmt = select(GoldAnswerRow.gold_id, GoldAnswerRow.answer, GoldItem.expected).join(
        GoldItem, GoldItem.id == GoldAnswerRow.gold_id
    )
    for gold_id, answer, expected in session.execute(stmt):
        answers[gold_id] = answers.get(gold_id, 0) + 1
        correct[gold_id] = correct.get(gold_id, 0) + (answer == expected)
    return [
        GoldSummary(
            g.id,
            g.key,
            g.prompt,
            str(g.expected),
            g.rationale,
            g.source,
            g.source_id,
            shown.get(g.id, 0),
            answers.get(g.id, 0),
            correct.get(g.id, 0),
            g.retired_at,
        )
        for g in session.scalars(select(GoldItem).order_by(GoldItem.id))
    ]


def placed_gold(session: Session) -> dict[str | None, set[int]]:
    """{annotator (None: the shared dataset): ids of the gold items ever placed with them}, every round."""
    out: dict[str | None, set[int]] = {}
    for annotator, gold_id in session.execute(select(GoldRecord.annotator, GoldRecord.gold_id)):
        out.setdefault(annotator, set()).add(gold_id)
    return out


def gold_count(session: Session, round_id: int) -> int | None:
    """The gold records per queue the round fixed at its first push (None: not fixed yet)."""
    return session.get(Round, round_id).gold_per_round


def fix_gold_count(session: Session, round_id: int, count: int) -> None:
    session.get(Round, round_id).gold_per_round = count


def rounds_with_idle_gold(session: Session) -> list[int]:
    """Ids of the rounds that no longer collect (RoundStatus.collects) and still have pushed gold records
    nobody answered: they wait in a queue whose round is over, which would tell them apart."""
    answered = select(GoldAnswerRow.id).where(GoldAnswerRow.record_id == GoldRecord.id).exists()
    stmt = (
        select(GoldRecord.round_id)
        .join(Round, Round.id == GoldRecord.round_id)
        .where(
            GoldRecord.argilla_record_id.is_not(None),
            ~answered,
            Round.status.not_in([s for s in RoundStatus if s.collects]),
        )
        .distinct()
    )
    return sorted(session.scalars(stmt))


def round_gold(session: Session, round_id: int) -> list[GoldPlacement]:
    """The round's gold records with their texts, by annotator then priority."""
    stmt = (
        select(GoldRecord, GoldItem)
        .join(GoldItem, GoldItem.id == GoldRecord.gold_id)
        .where(GoldRecord.round_id == round_id)
    )
    out = [
        GoldPlacement(
            r.id,
            r.gold_id,
            r.round_id,
            r.annotator,
            r.swapped,
            r.priority,
            r.argilla_record_id,
            g.prompt,
            g.response_a,
            g.response_b,
            g.source_id,
        )
        for r, g in session.execute(stmt)
    ]
    return sorted(out, key=lambda p: (p.annotator or "", p.priority))


def add_gold_records(session: Session, rows: Sequence[Mapping]) -> int:
    """Record placements (id, gold_id, round_id, annotator, swapped, priority); an existing one is kept."""
    upsert(session, GoldRecord, [{**r, "created_at": utcnow()} for r in rows])
    return len(rows)


def mark_gold_pushed(session: Session, record_ids: Mapping[str, str]) -> None:
    """{gold record id: Argilla record id} of records Argilla accepted."""
    for gid, rid in record_ids.items():
        session.execute(update(GoldRecord).where(GoldRecord.id == gid).values(argilla_record_id=rid))


def gold_records_by_id(session: Session, ids: Iterable[str]) -> dict[str, GoldRecord]:
    """{external id: its gold record} for the ids that are gold records (the others are not gold)."""
    rows = select_in(session, lambda chunk: select(GoldRecord).where(GoldRecord.id.in_(chunk)), list(ids))
    return {r.id: r for (r,) in rows}


def withdrawable_gold(session: Session, round_ids: Iterable[int]) -> dict[str, str]:
    """{gold record id: Argilla record id} of the pushed gold records of `round_ids` that nobody answered
    (waiting in the queue; an answered one stays, as an answered item's record does)."""
    answered = select(GoldAnswerRow.id).where(GoldAnswerRow.record_id == GoldRecord.id).exists()
    stmt = select(GoldRecord.id, GoldRecord.argilla_record_id).where(
        GoldRecord.round_id.in_(list(round_ids)), GoldRecord.argilla_record_id.is_not(None), ~answered
    )
    return dict(session.execute(stmt).all())


def mark_gold_withdrawn(session: Session, ids: Iterable[str]) -> None:
    ids = list(ids)
    if ids:
        session.execute(update(GoldRecord).where(GoldRecord.id.in_(ids)).values(argilla_record_id=None))


@dataclass(frozen=True)
class GoldAnswerWrite:
    """An answer read from Argilla, to store (or to replace the stored one when it changed)."""

    record_id: str
    annotator: str
    annotator_id: str
    answer: str
    response_id: str | None
    answered_at: datetime | None


def store_gold_answers(session: Session, writes: Sequence[GoldAnswerWrite]) -> int:
    """Store answers to gold records (the latest per record and user: a changed one replaces it). Returns how
    many were new or changed."""
    if not writes:
        return 0
    records = gold_records_by_id(session, {w.record_id for w in writes})
    stored = {
        (r.record_id, r.annotator_id): (r.answer, r.answered_at)
        for (r,) in select_in(
            session,
            lambda chunk: select(GoldAnswerRow).where(GoldAnswerRow.record_id.in_(chunk)),
            list(records),
        )
    }
    rows = []
    for w in writes:
        rec = records[w.record_id]
        old = stored.get((w.record_id, w.annotator_id))
        if old is not None and old[0] == w.answer and _same_time(old[1], w.answered_at):
            continue
        rows.append(
            {
                "record_id": w.record_id,
                "gold_id": rec.gold_id,
                "round_id": rec.round_id,
                "annotator": w.annotator,
                "annotator_id": w.annotator_id,
                "shown_swapped": rec.swapped,
                "answer": w.answer,
                "response_id": w.response_id,
                "answered_at": w.answered_at,
                "stored_at": utcnow(),
            }
        )
    changed = ["annotator", "answer", "response_id", "answered_at", "stored_at"]
    upsert(session, GoldAnswerRow, rows, constraint="uq_gold_answers_record_annotator", update=changed)
    return len(rows)


def _same_time(a: datetime | None, b: datetime | None) -> bool:
    from storage.types import as_utc

    return (None if a is None else as_utc(a)) == (None if b is None else as_utc(b))


def gold_answer_times(session: Session) -> dict[tuple[str, str], datetime | None]:
    """{(gold record id, Argilla user id): Argilla's time of the stored answer}: what `pull` has stored."""
    stmt = select(GoldAnswerRow.record_id, GoldAnswerRow.annotator_id, GoldAnswerRow.answered_at)
    return {(rid, uid): when for rid, uid, when in session.execute(stmt)}


def gold_answers(session: Session, *, round_id: int | None = None) -> list[GoldAnswer]:
    """Every stored answer to a gold item (of one round, or of all), by round, annotator and answer time."""
    stmt = (
        select(
            GoldAnswerRow.annotator,
            GoldAnswerRow.round_id,
            GoldAnswerRow.gold_id,
            GoldItem.expected,
            GoldAnswerRow.answer,
            GoldAnswerRow.shown_swapped,
            GoldAnswerRow.answered_at,
        )
        .join(GoldItem, GoldItem.id == GoldAnswerRow.gold_id)
        .join(Round, Round.id == GoldAnswerRow.round_id)
        .order_by(GoldAnswerRow.round_id, GoldAnswerRow.annotator, GoldAnswerRow.id)
    )
    if round_id is not None:
        stmt = stmt.where(GoldAnswerRow.round_id == round_id)
    return [
        GoldAnswer(who, rid, gid, str(expected), str(answer), bool(swapped), when)
        for who, rid, gid, expected, answer, swapped, when in session.execute(stmt)
    ]


@dataclass(frozen=True)
class RoundKey:
    """What a round's gold records share with its items: the number and strategy its records carry, and the
    seed their draws use."""

    number: int
    strategy: str
    seed: int


def round_key(session: Session, round_id: int) -> RoundKey:
    rnd = session.get(Round, round_id)
    return RoundKey(rnd.number, rnd.strategy, rnd.seed)
