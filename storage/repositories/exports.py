"""Read side of `pvar-loop export`: decided pairs with who answered them, why, and where the prompt came from.
Takes a Session; never commits."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db import select_in
from storage.models import AnnotationItem, DecisionLabel, Label, Prompt
from storage.repositories.items import items_with_texts, only_decided
from storage.repositories.labels import late_answers


@dataclass(frozen=True)
class ExportLabel:
    annotator: str
    choice: str  # a | b | tie | discard, our orientation (a = generation_a)
    rationale: str | None
    excluded: bool = False  # linked to the decision but not counted: the annotator was excluded


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
    labels: list[ExportLabel]  # the versions the decision was made from
    prompt_metadata: dict  # what ingest kept of the prompt's row: its extra columns and `metadata`
    late: list[ExportLabel] = field(default_factory=list)  # answers given or changed after (include_late)
    decision_method: str | None = None  # majority | dawid-skene (None: decided before 0014)
    confidence: float | None = None  # posterior probability of the decision


def exported_pairs(
    session: Session,
    *,
    include_cancelled: bool = False,
    include_ties: bool = False,
    include_late: bool = False,
) -> list[ExportPair]:
    """Decided items (a/b; ties too with `include_ties`), ordered by round and item; the items of
    cancelled/failed rounds only with `include_cancelled`. Undecided items have no decision: never exported.
    Each pair's labels are the answer versions its decision was made from; the late answers (given or
    changed after its round stopped collecting) too with `include_late`."""
    stmt = only_decided(
        items_with_texts(), include_ties=include_ties, include_cancelled=include_cancelled
    ).order_by(AnnotationItem.round_id, AnnotationItem.id)
    rows = session.execute(stmt).all()
    labels = _labels_by_item(session, [row.AnnotationItem.id for row in rows])
    metas = _metadata_by_prompt(session, sorted({row.AnnotationItem.prompt_id for row in rows}))
    late: dict[str, list[ExportLabel]] = {}
    if include_late:
        for a in late_answers(session):
            lb = a.label
            late.setdefault(lb.item_id, []).append(ExportLabel(lb.annotator, lb.choice, lb.rationale))
    return [
        ExportPair(
            row.AnnotationItem.id,
            row.AnnotationItem.round_id,
            row.round_number,
            row.arm,
            row.AnnotationItem.prompt_id,
            row.source_id,
            row.prompt,
            row.text_a,
            row.text_b,
            row.AnnotationItem.decision,
            labels.get(row.AnnotationItem.id, []),
            metas.get(row.AnnotationItem.prompt_id) or {},
            late.get(row.AnnotationItem.id, []),
            row.AnnotationItem.decision_method,
            row.AnnotationItem.confidence,
        )
        for row in rows
    ]


def _metadata_by_prompt(session: Session, prompt_ids: list[str]) -> dict[str, dict]:
    rows = select_in(
        session, lambda chunk: select(Prompt.id, Prompt.meta).where(Prompt.id.in_(chunk)), prompt_ids
    )
    return dict(rows)


def _labels_by_item(session: Session, item_ids: list[str]) -> dict[str, list[ExportLabel]]:
    rows = select_in(
        session,
        lambda chunk: (
            select(Label.item_id, Label.annotator, Label.choice, Label.rationale, DecisionLabel.counted)
            .join(DecisionLabel, DecisionLabel.label_id == Label.id)
            .where(DecisionLabel.item_id.in_(chunk))
        ),
        item_ids,
    )
    out: dict[str, list[ExportLabel]] = {}
    for item_id, annotator, choice, rationale, counted in sorted(rows, key=lambda r: (r[0], r[1])):
        out.setdefault(item_id, []).append(ExportLabel(annotator, choice, rationale, not counted))
    return out
