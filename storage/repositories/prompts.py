"""Repository for the prompt pool: which train prompts still need scoring for a (policy, reward model), and
prompt texts by id. Takes a Session; never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from storage.db import select_in
from storage.models import Prompt, PromptScore
from storage.statuses import Metric
from storage.upsert import upsert

TRAIN, EVAL = "train", "eval"  # Prompt.split values


@dataclass(frozen=True)
class PromptRow:
    id: str
    text: str


def _unscored_filter(checkpoint_id: str, reward_model: str):
    done = exists().where(
        PromptScore.prompt_id == Prompt.id,
        PromptScore.checkpoint_id == checkpoint_id,
        PromptScore.reward_model == reward_model,
        PromptScore.metric.in_(Metric.scored_markers()),
    )
    return and_(Prompt.split == "train", ~done)


def unscored_prompts(
    session: Session, checkpoint_id: str, reward_model: str, *, after: str | None = None, limit: int | None
) -> list[PromptRow]:
    """Train prompts without a score for (checkpoint, reward model), ordered by id, starting after `after`.

    The order is the content-hash id, so a restarted run meets the remaining prompts in the same batches.
    """
    stmt = select(Prompt.id, Prompt.text).where(_unscored_filter(checkpoint_id, reward_model))
    if after is not None:
        stmt = stmt.where(Prompt.id > after)
    stmt = stmt.order_by(Prompt.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [PromptRow(id=i, text=t) for i, t in session.execute(stmt).all()]


def unscored_among(
    session: Session, checkpoint_id: str, reward_model: str, prompt_ids: Sequence[str]
) -> list[PromptRow]:
    """The train prompts among `prompt_ids` without a score for (checkpoint, reward model), ordered by id."""
    rows = select_in(
        session,
        lambda chunk: select(Prompt.id, Prompt.text).where(
            _unscored_filter(checkpoint_id, reward_model), Prompt.id.in_(chunk)
        ),
        prompt_ids,
    )
    return sorted((PromptRow(id=i, text=t) for i, t in rows), key=lambda p: p.id)


def count_unscored(session: Session, checkpoint_id: str, reward_model: str) -> int:
    stmt = select(func.count()).select_from(Prompt).where(_unscored_filter(checkpoint_id, reward_model))
    return session.scalar(stmt) or 0


def count_train_prompts(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Prompt).where(Prompt.split == "train")) or 0


def prompt_texts(session: Session, prompt_ids: Sequence[str]) -> dict[str, str]:
    rows = select_in(
        session, lambda chunk: select(Prompt.id, Prompt.text).where(Prompt.id.in_(chunk)), prompt_ids
    )
    return dict(rows)


def source_ids(session: Session, prompt_ids: Sequence[str]) -> dict[str, str | None]:
    """{prompt id: the id the prompt had in the operator's data (set at ingest; None when it had none)}."""
    rows = select_in(
        session, lambda chunk: select(Prompt.id, Prompt.source_id).where(Prompt.id.in_(chunk)), prompt_ids
    )
    return dict(rows)


def add_prompts(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert prompts (id, text, source, source_id, split, meta[, created_at]); a prompt whose content-hash id
    is stored already is kept as it is. Returns rows sent."""
    return upsert(session, Prompt, rows)


def existing_prompt_ids(session: Session, prompt_ids: Sequence[str]) -> set[str]:
    """The ids among `prompt_ids` that are stored already."""
    rows = select_in(session, lambda chunk: select(Prompt.id).where(Prompt.id.in_(chunk)), prompt_ids)
    return {pid for (pid,) in rows}


def eval_prompt_texts(session: Session) -> list[str]:
    """Texts of the eval split, by id (a stable order for win-rate runs)."""
    return list(session.scalars(select(Prompt.text).where(Prompt.split == EVAL).order_by(Prompt.id)))


def eval_prompts(session: Session) -> list[tuple[str, str]]:
    """(id, text) of the eval split, by id: the same order as eval_prompt_texts."""
    rows = session.execute(select(Prompt.id, Prompt.text).where(Prompt.split == EVAL).order_by(Prompt.id))
    return [(pid, text) for pid, text in rows]


def constraints_by_text(
    session: Session, *, split: str | None = None, prompt_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """{prompt text: its metadata's verifier `constraints` (None when it has none)} of one split, of the given
    prompts, or of every prompt."""
    stmt = select(Prompt.text, Prompt.meta)
    if split is not None:
        stmt = stmt.where(Prompt.split == split)
    if prompt_ids is None:
        rows = session.execute(stmt).all()
    else:
        rows = select_in(session, lambda chunk: stmt.where(Prompt.id.in_(chunk)), prompt_ids)
    return {text: (meta.get("constraints") if isinstance(meta, dict) else None) for text, meta in rows}
