"""Read side of `pvar-loop export`: decided pairs with who answered them, why, and where the prompt came from.
Takes a Session; never commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from storage.db import select_in
from storage.models import AnnotationItem, Generation, Label, Prompt, Round
from storage.statuses import Choice, ItemStatus, RoundStatus


@dataclass(frozen=True)
class ExportLabel:
    annotator: str
    choice: str  # a | b | tie | discard, our orientation (a = generation_a)
    rationale: str | None


@dataclass(frozen=True)
class ExportPair:
    """A decided item in OUR orientation (a = generation_a), with its labels ordered by annotator."""

    item_id: str
    round_id: int
    round_number: int
    arm: str
    prompt_id: str
    source_id: str | None
    prompt: str
    text_a: str
    text_b: str
    decision: str  # a | b | tie
    labels: list[ExportLabel]


def exported_pairs(
    session: Session, *, include_cancelled: bool = False, include_ties: bool = False
) -> list[ExportPair]:
    """Decided items (a/b; ties too with `include_ties`), ordered by round and item; the items of
    cancelled/failed rounds only with `include_cancelled`. Undecided items have no decision: never exported."""
    ga, gb = aliased(Generation), aliased(Generation)
    decisions = Choice.voting() if include_ties else Choice.preferring()
    stmt = (
        select(AnnotationItem, Round.number, Round.arm, Prompt.source_id, Prompt.text, ga.text, gb.text)
        .join(Round, Round.id == AnnotationItem.round_id)
        .join(Prompt, Prompt.id == AnnotationItem.prompt_id)
        .join(ga, ga.id == AnnotationItem.generation_a_id)
        .join(gb, gb.id == AnnotationItem.generation_b_id)
        .where(AnnotationItem.status == ItemStatus.DECIDED, AnnotationItem.decision.in_(decisions))
        .order_by(AnnotationItem.round_id, AnnotationItem.id)
    )
    if not include_cancelled:
        stmt = stmt.where(Round.status.not_in(RoundStatus.freeing_states()))
    rows = session.execute(stmt).all()
    labels = _labels_by_item(session, [row[0].id for row in rows])
    return [
        ExportPair(
            item.id,
            item.round_id,
            number,
            arm,
            item.prompt_id,
            source_id,
            prompt,
            text_a,
            text_b,
            item.decision,
            labels.get(item.id, []),
        )
        for item, number, arm, source_id, prompt, text_a, text_b in rows
    ]


def _labels_by_item(session: Session, item_ids: list[str]) -> dict[str, list[ExportLabel]]:
    rows = select_in(
        session,
        lambda chunk: select(Label.item_id, Label.annotator, Label.choice, Label.rationale).where(
            Label.item_id.in_(chunk)
        ),
        item_ids,
    )
    out: dict[str, list[ExportLabel]] = {}
    for item_id, annotator, choice, rationale in sorted(rows, key=lambda r: (r[0], r[1])):
        out.setdefault(item_id, []).append(ExportLabel(annotator, choice, rationale))
    return out
