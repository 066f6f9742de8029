"""Repositories for scoring and selection: take a Session, never commit (the caller's unit of work does).

Every write is an upsert on the table's named unique constraint, so re-running a batch that was interrupted
(or that another process already wrote) is harmless.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, and_, exists, func, select, union
from sqlalchemy.orm import Session, aliased

from storage.models import (
    AnnotationItem,
    Checkpoint,
    Generation,
    Label,
    Prompt,
    PromptScore,
    RewardScore,
    Round,
)
from storage.upsert import upsert

# Metrics written per prompt. A prompt counts as scored for (checkpoint, reward model) once it has a pvar row,
# or an `excluded` row saying its samples could not be scored (value = number of valid responses).
PVAR, REWARD_GAP, EXCLUDED = "pvar", "reward_gap", "excluded"
# 1.0/0.0: the experiment's simulated annotator would (not) see a difference in the shown pair (an oracle
# that only experiments have; see loop.experiment.runner.mark_disagreement).
DISAGREE = "disagree"
DONE_METRICS = (PVAR, EXCLUDED)
# Round states whose annotation items no longer hold their prompts.
CLOSED_ROUND_STATES = ("cancelled", "failed")
# Bound parameters per IN (...) list; far below SQLite's limit (32766, or 999 on old builds).
IN_CHUNK = 500

T = TypeVar("T")


@dataclass(frozen=True)
class PromptRow:
    id: str
    text: str


@dataclass(frozen=True)
class StoredGeneration:
    id: int
    prompt_id: str
    sample_index: int
    text: str
    n_tokens: int


@dataclass(frozen=True)
class CandidateRow:
    prompt_id: str
    pvar: float
    reward_gap: float
    disagree: float | None = None


def select_in(
    session: Session, build: Callable[[list[T]], Select], values: Iterable[T], chunk: int = IN_CHUNK
) -> list[Any]:
    """Rows of build(chunk_of_values) over `values` split into chunks: THE place big IN lists are cut up."""
    distinct = list(dict.fromkeys(values))
    rows: list[Any] = []
    for start in range(0, len(distinct), chunk):
        rows.extend(session.execute(build(distinct[start : start + chunk])).all())
    return rows


# --- checkpoints ---


def _model_ref(model: str) -> str:
    """A local directory as its absolute path (one dir reached by two paths is one policy); else the id."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def initial_checkpoint_id(model: str) -> str:
    """Stable id of the initial policy `model` (hub id or local dir): readable name plus a hash of the ref."""
    ref = _model_ref(model)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", ref.rstrip("/").rsplit("/", 1)[-1])[:80] or "model"
    return f"init-{name}-{hashlib.sha256(ref.encode('utf-8')).hexdigest()[:12]}"


def ensure_initial_checkpoint(session: Session, model: str) -> str:
    """Create (once) the checkpoint row of the initial policy and return its id."""
    checkpoint_id = initial_checkpoint_id(model)
    upsert(session, Checkpoint, [{"id": checkpoint_id, "path": _model_ref(model), "label_count": 0}])
    return checkpoint_id


def get_checkpoint(session: Session, checkpoint_id: str) -> Checkpoint | None:
    return session.get(Checkpoint, checkpoint_id)


# --- the unscored pool ---


def _unscored_filter(checkpoint_id: str, reward_model: str):
    done = exists().where(
        PromptScore.prompt_id == Prompt.id,
        PromptScore.checkpoint_id == checkpoint_id,
        PromptScore.reward_model == reward_model,
        PromptScore.metric.in_(DONE_METRICS),
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


def count_unscored(session: Session, checkpoint_id: str, reward_model: str) -> int:
    stmt = select(func.count()).select_from(Prompt).where(_unscored_filter(checkpoint_id, reward_model))
    return session.scalar(stmt) or 0


def count_train_prompts(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Prompt).where(Prompt.split == "train")) or 0


# --- generations, reward scores, prompt scores ---


def generations_for(
    session: Session, checkpoint_id: str, prompt_ids: Sequence[str]
) -> dict[str, dict[int, StoredGeneration]]:
    """Stored samples of `checkpoint_id` for these prompts: {prompt_id: {sample_index: generation}}."""
    rows = select_in(
        session,
        lambda chunk: select(
            Generation.id, Generation.prompt_id, Generation.sample_index, Generation.text, Generation.n_tokens
        ).where(Generation.checkpoint_id == checkpoint_id, Generation.prompt_id.in_(chunk)),
        prompt_ids,
    )
    out: dict[str, dict[int, StoredGeneration]] = {}
    for row in rows:
        out.setdefault(row.prompt_id, {})[row.sample_index] = StoredGeneration(*row)
    return out


def add_generations(
    session: Session, checkpoint_id: str, rows: Sequence[dict[str, Any]]
) -> dict[str, dict[int, StoredGeneration]]:
    """Insert samples (prompt_id, sample_index, text, n_tokens); an existing sample is kept as it is.

    Returns what is stored afterwards for those prompts, so the caller can check that its texts won (another
    process may have written the same samples first) and learn the generation ids.
    """
    upsert(
        session,
        Generation,
        [{**r, "checkpoint_id": checkpoint_id} for r in rows],
        constraint="uq_generations_sample",
    )
    return generations_for(session, checkpoint_id, [r["prompt_id"] for r in rows])


def upsert_reward_scores(session: Session, reward_model: str, scores: Sequence[tuple[int, float]]) -> int:
    """(generation_id, raw logit) pairs; a rescored generation gets the new value, so a prompt's PVar always
    matches the reward scores stored next to it."""
    rows = [{"generation_id": g, "reward_model": reward_model, "score": float(s)} for g, s in scores]
    return upsert(
        session, RewardScore, rows, constraint="uq_reward_scores_generation_model", update=["score"]
    )


def upsert_prompt_scores(
    session: Session,
    checkpoint_id: str,
    reward_model: str,
    rows: Sequence[tuple[str, str, int, float]],
    round_id: int | None = None,
) -> int:
    """(prompt_id, metric, k, value) rows for one checkpoint and reward model."""
    payload = [
        {
            "prompt_id": p,
            "checkpoint_id": checkpoint_id,
            "reward_model": reward_model,
            "metric": m,
            "k": k,
            "value": float(v),
            "round_id": round_id,
        }
        for p, m, k, v in rows
    ]
    return upsert(session, PromptScore, payload, constraint="uq_prompt_scores_key", update=["k", "value"])


def reward_scores_for(
    session: Session, checkpoint_id: str, reward_model: str, prompt_ids: Sequence[str] | None = None
) -> dict[str, list[tuple[int, float]]]:
    """{prompt_id: [(sample_index, score), ...]} by sample index; all prompts when prompt_ids is None."""

    def build(chunk: list[str] | None) -> Select:
        stmt = (
            select(Generation.prompt_id, Generation.sample_index, RewardScore.score)
            .join(RewardScore, RewardScore.generation_id == Generation.id)
            .where(Generation.checkpoint_id == checkpoint_id, RewardScore.reward_model == reward_model)
        )
        return stmt if chunk is None else stmt.where(Generation.prompt_id.in_(chunk))

    rows = session.execute(build(None)).all() if prompt_ids is None else select_in(session, build, prompt_ids)
    out: dict[str, list[tuple[int, float]]] = {}
    for prompt_id, index, score in rows:
        out.setdefault(prompt_id, []).append((index, score))
    return {p: sorted(v) for p, v in out.items()}


# --- selection candidates ---


def taken_prompt_ids(arm: str = "main") -> Select:
    """Prompts arm `arm` may not select again: in one of its rounds that is not cancelled/failed, or labelled
    in one of its rounds.

    A cancelled or failed round frees its prompts unless somebody already labelled them. Arms are separate
    policy lineages drawing from the same pool: another arm's rounds and labels take nothing from this one
    (production has the single arm 'main').
    """
    in_open_round = (
        select(AnnotationItem.prompt_id)
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(Round.arm == arm, Round.status.not_in(CLOSED_ROUND_STATES))
    )
    labelled = (
        select(AnnotationItem.prompt_id)
        .join(Label, Label.item_id == AnnotationItem.id)
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(Round.arm == arm)
    )
    return select(union(in_open_round, labelled).subquery().c[0])


def candidate_scores(
    session: Session, checkpoint_id: str, reward_model: str, arm: str = "main"
) -> list[CandidateRow]:
    """pvar and reward_gap (and disagree, where an experiment stored it) of every scored train prompt not taken
    by `arm`, for (checkpoint, reward model)."""
    pvar, gap, dis = aliased(PromptScore), aliased(PromptScore), aliased(PromptScore)

    def same_prompt(other, metric: str):  # `other` scores the same prompt, policy and reward model as `pvar`
        return and_(
            other.prompt_id == pvar.prompt_id,
            other.checkpoint_id == pvar.checkpoint_id,
            other.reward_model == pvar.reward_model,
            other.metric == metric,
        )

    stmt = (
        select(pvar.prompt_id, pvar.value, gap.value, dis.value)
        .join(gap, same_prompt(gap, REWARD_GAP))
        .outerjoin(dis, same_prompt(dis, DISAGREE))
        .join(Prompt, Prompt.id == pvar.prompt_id)
        .where(
            pvar.checkpoint_id == checkpoint_id,
            pvar.reward_model == reward_model,
            pvar.metric == PVAR,
            Prompt.split == "train",
            pvar.prompt_id.not_in(taken_prompt_ids(arm)),
        )
        .order_by(pvar.prompt_id)
    )
    return [CandidateRow(p, v, g, d) for p, v, g, d in session.execute(stmt).all()]


def count_scored(session: Session, checkpoint_id: str, reward_model: str) -> int:
    """Train prompts with a pvar score for (checkpoint, reward model), taken or not."""
    stmt = (
        select(func.count())
        .select_from(PromptScore)
        .where(
            PromptScore.checkpoint_id == checkpoint_id,
            PromptScore.reward_model == reward_model,
            PromptScore.metric == PVAR,
        )
    )
    return session.scalar(stmt) or 0


def scored_pairs(session: Session) -> list[tuple[str, str, int]]:
    """(checkpoint_id, reward_model, prompts with pvar) of every pair with scores, newest checkpoint first."""
    stmt = (
        select(PromptScore.checkpoint_id, PromptScore.reward_model, func.count())
        .join(Checkpoint, Checkpoint.id == PromptScore.checkpoint_id)
        .where(PromptScore.metric == PVAR)
        .group_by(PromptScore.checkpoint_id, PromptScore.reward_model, Checkpoint.created_at)
        .order_by(Checkpoint.created_at.desc(), PromptScore.checkpoint_id, PromptScore.reward_model)
    )
    return [(c, r, n) for c, r, n in session.execute(stmt).all()]


def prompt_texts(session: Session, prompt_ids: Sequence[str]) -> dict[str, str]:
    rows = select_in(
        session, lambda chunk: select(Prompt.id, Prompt.text).where(Prompt.id.in_(chunk)), prompt_ids
    )
    return dict(rows)


__all__ = [
    "DONE_METRICS",
    "EXCLUDED",
    "PVAR",
    "REWARD_GAP",
    "CandidateRow",
    "PromptRow",
    "StoredGeneration",
    "add_generations",
    "candidate_scores",
    "count_scored",
    "count_train_prompts",
    "count_unscored",
    "ensure_initial_checkpoint",
    "generations_for",
    "get_checkpoint",
    "initial_checkpoint_id",
    "prompt_texts",
    "reward_scores_for",
    "scored_pairs",
    "select_in",
    "taken_prompt_ids",
    "unscored_prompts",
    "upsert_prompt_scores",
    "upsert_reward_scores",
]
