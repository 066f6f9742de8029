"""Our annotation item <-> an Argilla record, and an Argilla response -> a label in OUR orientation.

The record's external id is our item id (a content hash), so pushing an item again updates its record.
`swapped` decides which generation Argilla shows as "response_a"; an annotator's "a"/"b" is about what they
saw, and is mapped back through the same flag (the mapping is its own inverse). The rewards and the swap flag
stay in our database: Argilla returns a record's metadata to every user who may read the record, annotators
included, and either value would tell them which response the reward model prefers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from annotation.dataset import MARKDOWN, PAIR, PROMPT, QUESTION, RATIONALE, SIDE_BY_SIDE, SOURCE_ID, STACKED
from storage.repositories.items import ItemContent
from storage.statuses import Choice


def flip(choice: Choice | str, swapped: bool) -> Choice:
    """Shown orientation <-> ours: a/b exchange when the pair was swapped; tie and discard stay."""
    return Choice(choice).flipped if swapped else Choice(choice)


def record_json(
    external_id: str,
    prompt: str,
    text_a: str,
    text_b: str,
    swapped: bool,
    metadata: dict[str, Any],
    layout: str = SIDE_BY_SIDE,
) -> dict[str, Any]:
    """The JSON of a pairwise record for PUT /api/v1/datasets/{id}/records/bulk, with the fields of the
    dataset's `layout`: `text_a` is shown as response A unless `swapped`."""
    shown_a, shown_b = (text_b, text_a) if swapped else (text_a, text_b)
    if layout == MARKDOWN:
        fields: dict[str, Any] = {PROMPT: prompt, STACKED[0]: shown_a, STACKED[1]: shown_b}
    else:
        fields = {PROMPT: prompt, PAIR: {"a": shown_a, "b": shown_b}}
    return {"external_id": external_id, "fields": fields, "metadata": metadata}


def to_record(
    item: ItemContent, priority: int | None = None, layout: str = SIDE_BY_SIDE, *, blind: bool = False
) -> dict[str, Any]:
    """The JSON of an annotation item's record; `priority` (1 = label first) is the item's place in the round's
    queue. A `blind` record (in one annotator's own dataset) carries only `round` and `priority`."""
    # Nothing that orders the two responses or tells a PVar pick from an audit pick (annotators can read
    # metadata through the API): no rewards, no swap flag, no PVar; the priority places audit picks at
    # seeded random ranks among the others. An upsert replaces the metadata, so re-sending a record pushed
    # by an older version removes them.
    metadata: dict[str, Any] = {"round": item.round_number}
    if not blind:
        metadata["strategy"] = item.strategy
    if priority is not None:
        metadata["priority"] = priority
    if (
        item.source_id is not None and not blind
    ):  # the operator's own id of the prompt, so they can find it in Argilla
        metadata[SOURCE_ID] = item.source_id
    return record_json(item.id, item.prompt, item.text_a, item.text_b, item.swapped, metadata, layout)


def shown_pair(fields: dict[str, Any]) -> tuple[str, str]:
    """(response A, response B) as a record of either layout shows them."""
    pair = fields.get(PAIR)
    if isinstance(pair, dict):
        return str(pair.get("a", "")), str(pair.get("b", ""))
    return str(fields.get(STACKED[0], "")), str(fields.get(STACKED[1], ""))


@dataclass(frozen=True)
class Answer:
    """One annotator's usable answer to a record, in OUR orientation."""

    choice: Choice
    rationale: str | None
    submitted_at: datetime | None
    answered_at: datetime | None = None  # Argilla's inserted_at: when first given (an edit leaves it)


@dataclass(frozen=True)
class Rejected:
    """Why a response cannot become a label (reported, never fatal)."""

    reason: str


def _value(values: dict | None, question: str) -> Any:
    entry = (values or {}).get(question)
    return entry.get("value") if isinstance(entry, dict) else None


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_response(response: dict[str, Any], swapped: bool) -> Answer | Rejected | None:
    """A response JSON as an Answer; None for a draft (work in progress, not an answer yet)."""
    status = response.get("status")
    values = response.get("values")
    rationale = _value(values, RATIONALE)
    rationale = (rationale.strip() or None) if isinstance(rationale, str) else None
    when = _timestamp(response.get("updated_at") or response.get("inserted_at"))
    first = _timestamp(response.get("inserted_at"))
    if status == "draft":
        return None
    if status == "discarded":
        return Answer(Choice.DISCARD, rationale, when, first)
    if status != "submitted":
        return Rejected(f"unknown response status {status!r}")
    shown = _value(values, QUESTION)
    if shown is None:
        return Rejected(f"submitted without a {QUESTION!r} answer")
    if shown not in Choice.voting():
        voting = ", ".join(Choice.voting())
        return Rejected(f"unknown {QUESTION!r} label {shown!r} (expected one of {voting})")
    return Answer(flip(shown, swapped), rationale, when, first)
