"""The database reads behind the reliability figures of `annotators list`, `status` and the report: the latest
version of every answer with the A/B swap it was shown with, and the gold answers. Takes a Session, never
writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from loop.quality.flags import flag_all
from loop.quality.reliability import GoldRow, ItemAnswer, as_json, reliability
from storage.repositories import eval_comparisons as eval_repo
from storage.repositories import gold as gold_repo
from storage.repositories import labels as labels_repo
from storage.repositories import rounds as rounds_repo
from storage.statuses import Verdict

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from loop.config import QualityConfig


def _gold_rows(session: Session, round_id: int | None) -> Sequence[GoldRow]:
    """The gold answers (of one round or all), in the gold item's own a/b."""
    return gold_repo.gold_answers(session, round_id=round_id)


def item_answers(session: Session, round_id: int | None = None) -> list[ItemAnswer]:
    """The latest version of every round-item answer (of one round or all) as reliability reads it, and the
    human-evaluation answers on the checkpoint each round trained (items "eval:<comparison id>", a = the
    checkpoint's response; Argilla's answer times are not stored for them, so they have no pace). Those are
    not blind (the evaluation dataset is shared): they count in position bias and tie/discard rates only."""
    answers = [
        ItemAnswer(r.round_id, r.item_id, r.annotator, r.choice, r.swapped, r.answered_at)
        for r in labels_repo.shown_answers(session, round_id)
    ]
    answers += [
        ItemAnswer(rid, f"eval:{cid}", annotator, Verdict(verdict).choice, swapped, None, blind=False)
        for rid, cid, annotator, verdict, swapped in eval_repo.evaluation_answers(session, round_id)
    ]
    return answers


def annotator_reliability(session: Session, quality: QualityConfig, round_id: int | None = None) -> dict:
    """Every annotator's figures, cumulative and per round, flagged against `[quality]` (as JSON)."""
    rel = flag_all(reliability(item_answers(session, round_id), _gold_rows(session, round_id)), quality)
    names = {r.id: f"{r.arm}/{r.number}" for r in rounds_repo.all_rounds(session)}
    return as_json(rel, names)
