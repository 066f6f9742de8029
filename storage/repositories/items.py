"""Repository for annotation items: what to push, what was pushed, decisions out (labels: labels.py).

Takes a Session and never commits (the caller's unit of work does). Queries select by round with joins
instead of long IN lists, so they scale to a 10k-item round on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session, aliased

from storage.models import AnnotationItem, Generation, Prompt, PromptScore, Round
from storage.repositories.dpo_margins import latest_margins
from storage.statuses import PRODUCTION_ARM, Choice, ItemStatus, Metric, RoundStatus
from storage.upsert import upsert


@dataclass(frozen=True)
class ItemContent:
    """Everything a record shows or carries as metadata, in OUR orientation (a = generation_a), and the swap
    flag that decides which side shows which (it stays in our database, as do the rewards)."""

    id: str
    round_number: int
    strategy: str
    swapped: bool
    prompt: str
    text_a: str
    text_b: str
    argilla_record_id: str | None
    source_id: str | None = None  # the prompt's id in the operator's data (Prompt.source_id)


@dataclass(frozen=True)
class ItemState:
    id: str
    round_id: int
    swapped: bool
    status: ItemStatus
    decision: str | None
    votes: dict[str, Any]
    argilla_record_id: str | None
    decision_method: str | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class DecidedPair:
    """A training pair: the annotators' preferred response first."""

    item_id: str
    round_id: int
    prompt_id: str
    prompt: str
    chosen: str
    rejected: str


def round_id_for(session: Session, number: int, arm: str = PRODUCTION_ARM) -> int | None:
    return session.scalar(select(Round.id).where(Round.arm == arm, Round.number == number))


def recorded_min_submitted(session: Session, round_id: int) -> int | None:
    """The answers per item the round recorded at its first step; None before that (reads only)."""
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise LookupError(f"round id {round_id} does not exist")
    return rnd.min_submitted


def record_min_submitted(session: Session, round_id: int, configured: int) -> int:
    """Record `configured` as the answers per item the round needs unless it recorded a value already (so a
    later change of the setting applies from the next round on); returns the recorded value."""
    recorded = recorded_min_submitted(session, round_id)
    if recorded is not None:
        return recorded
    session.get(Round, round_id).min_submitted = configured
    return configured


def collecting_rounds(session: Session, round_id: int | None = None) -> dict[int, int | None]:
    """{round id: recorded min_submitted} of the rounds (of one, or of all) whose decisions still follow the
    answers (RoundStatus.collects); the items of every other round keep their decisions."""
    stmt = select(Round.id, Round.min_submitted).where(
        Round.status.in_([s for s in RoundStatus if s.collects])
    )
    if round_id is not None:
        stmt = stmt.where(Round.id == round_id)
    return dict(session.execute(stmt).all())


def freed_round_ids(session: Session) -> set[int]:
    """Ids of cancelled (or failed) rounds: their prompts are free again, their labels are kept but not
    trained on or exported by default (RoundStatus.frees_prompts)."""
    return set(session.scalars(select(Round.id).where(Round.status.in_(RoundStatus.freeing_states()))))


def records_to_withdraw(session: Session) -> dict[int, dict[str, str]]:
    """{round id: {item id: Argilla record id}} of the items whose record may still wait in the annotators'
    queue (in Argilla, not settled) though their round collects no more: cancelled/failed, or closed at its
    deadline (training on), where an answer would only be a late one nobody uses."""
    stmt = (
        select(AnnotationItem.round_id, AnnotationItem.id, AnnotationItem.argilla_record_id)
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(
            Round.status.in_([s for s in RoundStatus if not s.collects]),
            AnnotationItem.argilla_record_id.is_not(None),
            AnnotationItem.status.in_((ItemStatus.PENDING, ItemStatus.PUSHED)),
        )
        .order_by(AnnotationItem.round_id, AnnotationItem.id)
    )
    out: dict[int, dict[str, str]] = {}
    for round_id, item_id, record_id in session.execute(stmt):
        out.setdefault(round_id, {})[item_id] = record_id
    return out


def add_items(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert annotation items (id, round_id, prompt_id, generation_a_id, generation_b_id, swapped, audit,
    status, votes); a round's item for a prompt that is stored already is kept as it is. Returns rows sent."""
    return upsert(session, AnnotationItem, rows, constraint="uq_annotation_items_round_prompt")


def mark_withdrawn(session: Session, item_ids: Sequence[str]) -> int:
    """The items' records were deleted from Argilla: forget the record ids (labels and statuses stay)."""
    if not item_ids:
        return 0
    session.execute(
        update(AnnotationItem).where(AnnotationItem.id.in_(list(item_ids))).values(argilla_record_id=None)
    )
    return len(item_ids)


def items_with_texts() -> Select:
    """THE query for annotation items with what a pair is made of: rows (AnnotationItem, round_number, arm,
    strategy, prompt, source_id, text_a, text_b), in OUR orientation (a = generation_a). Pushing,
    training and export all read pairs through it."""
    ga, gb = aliased(Generation), aliased(Generation)
    return (
        select(
            AnnotationItem,
            Round.number.label("round_number"),
            Round.arm,
            Round.strategy,
            Prompt.text.label("prompt"),
            Prompt.source_id,
            ga.text.label("text_a"),
            gb.text.label("text_b"),
        )
        .join(Round, Round.id == AnnotationItem.round_id)
        .join(Prompt, Prompt.id == AnnotationItem.prompt_id)
        .join(ga, ga.id == AnnotationItem.generation_a_id)
        .join(gb, gb.id == AnnotationItem.generation_b_id)
    )


def only_decided(stmt: Select, *, include_ties: bool = False, include_cancelled: bool = False) -> Select:
    """items_with_texts() narrowed to THE meaning of "decided" that training and export share: a majority
    decision of a or b (a tie too with `include_ties`; undecided items never), items of cancelled/failed rounds
    only with `include_cancelled` (an operator's explicit choice)."""
    decisions = Choice.voting() if include_ties else Choice.preferring()
    stmt = stmt.where(AnnotationItem.status == ItemStatus.DECIDED, AnnotationItem.decision.in_(decisions))
    if not include_cancelled:
        stmt = stmt.where(Round.status.not_in(RoundStatus.freeing_states()))
    return stmt


def decided_pairs_of_round(session: Session, round_id: int, *, include_ties: bool = False) -> list:
    """One round's decided items as items_with_texts() rows (a tie too with `include_ties`)."""
    stmt = only_decided(items_with_texts(), include_ties=include_ties).where(
        AnnotationItem.round_id == round_id
    )
    return list(session.execute(stmt))


def items_to_push(session: Session, round_id: int, *, include_pushed: bool = False) -> list[ItemContent]:
    """Items of a round not yet in Argilla (all of them with include_pushed), ordered by id.

    PVar comes from the round's input policy (any reward model's latest value).
    """
    stmt = items_with_texts().where(AnnotationItem.round_id == round_id).order_by(AnnotationItem.id)
    if not include_pushed:
        stmt = stmt.where(
            or_(AnnotationItem.status == ItemStatus.PENDING, AnnotationItem.argilla_record_id.is_(None))
        )
    rows = session.execute(stmt).all()
    if not rows:
        return []
    return [
        ItemContent(
            id=row.AnnotationItem.id,
            round_number=row.round_number,
            strategy=row.strategy,
            swapped=row.AnnotationItem.swapped,
            prompt=row.prompt,
            text_a=row.text_a,
            text_b=row.text_b,
            argilla_record_id=row.AnnotationItem.argilla_record_id,
            source_id=row.source_id,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class ItemScores:
    """What ranks an item in its round's queue: the scores it was selected on (None when not stored)."""

    id: str
    audit: bool
    pvar: float | None
    reward_gap: float | None


def round_item_scores(session: Session, round_id: int, reward_model: str) -> list[ItemScores]:
    """The round's items with the PVar and reward gap of their prompt under the round's input policy and
    `reward_model`, ordered by item id."""
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise LookupError(f"round id {round_id} does not exist")
    scores: dict[tuple[str, str], float] = {}
    if rnd.policy_in is not None:
        stmt = (
            select(PromptScore.prompt_id, PromptScore.metric, PromptScore.value)
            .join(AnnotationItem, AnnotationItem.prompt_id == PromptScore.prompt_id)
            .where(
                AnnotationItem.round_id == round_id,
                PromptScore.checkpoint_id == rnd.policy_in,
                PromptScore.reward_model == reward_model,
                PromptScore.metric.in_((Metric.PVAR, Metric.REWARD_GAP)),
            )
        )
        scores = {(pid, metric): value for pid, metric, value in session.execute(stmt)}
    items = session.scalars(
        select(AnnotationItem).where(AnnotationItem.round_id == round_id).order_by(AnnotationItem.id)
    )
    return [
        ItemScores(
            i.id,
            i.audit,
            scores.get((i.prompt_id, Metric.PVAR)),
            scores.get((i.prompt_id, Metric.REWARD_GAP)),
        )
        for i in items
    ]


def mark_pushed(session: Session, record_ids: Mapping[str, str]) -> int:
    """Store Argilla's record ids; pending items become `pushed` (decided ones keep their state)."""
    if not record_ids:
        return 0
    session.execute(
        update(AnnotationItem),
        [{"id": item_id, "argilla_record_id": rid} for item_id, rid in record_ids.items()],
    )
    session.execute(
        update(AnnotationItem)
        .where(AnnotationItem.id.in_(list(record_ids)), AnnotationItem.status == ItemStatus.PENDING)
        .values(status=ItemStatus.PUSHED)
    )
    return len(record_ids)


def pushed_items(session: Session, round_id: int | None = None) -> list[ItemState]:
    """Items that are in Argilla (of one round, or of all rounds)."""
    stmt = select(AnnotationItem).where(AnnotationItem.argilla_record_id.is_not(None))
    if round_id is not None:
        stmt = stmt.where(AnnotationItem.round_id == round_id)
    return [
        ItemState(
            i.id,
            i.round_id,
            i.swapped,
            i.status,
            i.decision,
            dict(i.votes or {}),
            i.argilla_record_id,
            i.decision_method,
            i.confidence,
        )
        for i in session.scalars(stmt.order_by(AnnotationItem.id))
    ]


def known_item_ids(session: Session) -> set[str]:
    return set(session.scalars(select(AnnotationItem.id)))


def set_outcomes(session: Session, outcomes: Iterable[tuple]) -> int:
    """(item id, status, decision, votes[, method, confidence]) per item; returns how many were written."""
    params = []
    for i, s, d, v, *rest in outcomes:
        row = {"id": i, "status": s, "decision": d, "votes": v}
        if rest:
            row["decision_method"], row["confidence"] = rest
        params.append(row)
    if params:
        session.execute(update(AnnotationItem), params)
    return len(params)


def decided_items(
    session: Session, round_ids: Sequence[int] | None = None, *, include_cancelled: bool = False
) -> list[DecidedPair]:
    """Pairs with a decided a/b preference (ties and undecided items carry no training signal). Items of
    cancelled/failed rounds are left out unless `include_cancelled` (an operator's explicit choice)."""
    stmt = only_decided(items_with_texts(), include_cancelled=include_cancelled).order_by(
        AnnotationItem.round_id, AnnotationItem.id
    )
    if round_ids is not None:
        stmt = stmt.where(AnnotationItem.round_id.in_(list(round_ids)))
    out = []
    for row in session.execute(stmt):
        item, text_a, text_b = row.AnnotationItem, row.text_a, row.text_b
        chosen, rejected = (text_a, text_b) if item.decision == Choice.A else (text_b, text_a)
        out.append(DecidedPair(item.id, item.round_id, item.prompt_id, row.prompt, chosen, rejected))
    return out


def item_prompt_ids(session: Session) -> dict[int, list[str]]:
    """{round id: prompt ids of its annotation items}."""
    out: dict[int, list[str]] = {}
    for round_id, prompt_id in session.execute(select(AnnotationItem.round_id, AnnotationItem.prompt_id)):
        out.setdefault(round_id, []).append(prompt_id)
    return out


@dataclass(frozen=True)
class ItemOutcome:
    round_number: int
    audit: bool
    status: ItemStatus  # decided | undecided
    decision: (
        Choice | None
    )  # a | b | tie, in our orientation (a = the selection reward model's higher reward)
    votes: dict[str, int]
    dpo_margin: float | None = None  # under the newest checkpoint trained on it (storage.models.DpoMargin)


def audit_outcomes(session: Session, arm: str = PRODUCTION_ARM) -> list[ItemOutcome]:
    """Items with an outcome (decided or undecided) of the arm's pvar rounds that hold audit items, cancelled
    and failed rounds left out: what the PVar-vs-audit comparison counts."""
    audited = select(AnnotationItem.round_id).where(AnnotationItem.audit.is_(True)).distinct()
    stmt = (
        select(
            AnnotationItem.id,
            Round.number,
            AnnotationItem.audit,
            AnnotationItem.status,
            AnnotationItem.decision,
            AnnotationItem.votes,
        )
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(
            Round.arm == arm,
            Round.strategy == "pvar",
            Round.status.not_in(RoundStatus.freeing_states()),
            AnnotationItem.round_id.in_(audited),
            AnnotationItem.status.in_((ItemStatus.DECIDED, ItemStatus.UNDECIDED)),
        )
        .order_by(Round.number, AnnotationItem.id)
    )
    margins = latest_margins(session)
    return [
        ItemOutcome(number, bool(audit), str(status), decision, dict(votes or {}), margins.get(item_id))
        for item_id, number, audit, status, decision, votes in session.execute(stmt)
    ]
