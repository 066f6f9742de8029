"""Repository for scoring results: sampled generations, their reward scores and per-prompt metrics (PVar,
reward gap). Every write is an upsert on the table's named unique constraint, so re-running a batch that was
interrupted (or that another process already wrote) is harmless. Takes a Session; never commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from storage.db import in_chunks, select_in
from storage.models import Generation, Prompt, PromptScore, RewardExclusion, RewardScore
from storage.statuses import Metric
from storage.upsert import upsert


@dataclass(frozen=True)
class StoredGeneration:
    id: int
    prompt_id: str
    sample_index: int
    text: str
    n_tokens: int


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
    matches the reward scores stored next to it. A scored sample's old exclusion (see below) goes."""
    rows = [{"generation_id": g, "reward_model": reward_model, "score": float(s)} for g, s in scores]
    _delete_for(session, RewardExclusion, reward_model, [g for g, _ in scores])
    return upsert(
        session, RewardScore, rows, constraint="uq_reward_scores_generation_model", update=["score"]
    )


def upsert_reward_exclusions(session: Session, reward_model: str, rows: Sequence[tuple[int, str]]) -> int:
    """(generation_id, reason) of samples the reward model gave no score; a repeat keeps the newest reason,
    and an old score of such a sample goes (a sample has a score or an exclusion per reward model, not both)."""
    payload = [{"generation_id": g, "reward_model": reward_model, "reason": r} for g, r in rows]
    _delete_for(session, RewardScore, reward_model, [g for g, _ in rows])
    return upsert(
        session,
        RewardExclusion,
        payload,
        constraint="uq_reward_exclusions_generation_model",
        update=["reason"],
    )


def _delete_for(session: Session, model, reward_model: str, generation_ids: Sequence[int]) -> None:
    """Delete model's rows of these generations under reward_model."""
    for chunk in in_chunks(generation_ids):
        session.execute(
            delete(model).where(model.reward_model == reward_model, model.generation_id.in_(chunk))
        )


def reward_exclusion_counts(
    session: Session, checkpoint_id: str | None = None, reward_model: str | None = None
) -> list[tuple[str, str, str, int]]:
    """(checkpoint, reward model, reason, number of samples) the reward model gave no score, optionally for
    one checkpoint and/or reward model."""
    stmt = (
        select(Generation.checkpoint_id, RewardExclusion.reward_model, RewardExclusion.reason, func.count())
        .join(Generation, Generation.id == RewardExclusion.generation_id)
        .group_by(Generation.checkpoint_id, RewardExclusion.reward_model, RewardExclusion.reason)
        .order_by(Generation.checkpoint_id, RewardExclusion.reward_model, RewardExclusion.reason)
    )
    if checkpoint_id is not None:
        stmt = stmt.where(Generation.checkpoint_id == checkpoint_id)
    if reward_model is not None:
        stmt = stmt.where(RewardExclusion.reward_model == reward_model)
    return [tuple(row) for row in session.execute(stmt).all()]


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


def put_disagreement(
    session: Session,
    checkpoint_id: str,
    reward_model: str,
    values: Mapping[str, float],
    *,
    k: int,
    round_id: int | None,
) -> int:
    """{prompt_id: 1.0 when the annotator would see a difference in the prompt's pair, else 0.0} as the
    prompts' Metric.DISAGREE scores (a stored value is replaced; its k and round stay)."""
    payload = [
        {
            "prompt_id": pid,
            "checkpoint_id": checkpoint_id,
            "round_id": round_id,
            "reward_model": reward_model,
            "metric": Metric.DISAGREE,
            "k": k,
            "value": value,
        }
        for pid, value in values.items()
    ]
    return upsert(session, PromptScore, payload, constraint="uq_prompt_scores_key", update=("value",))


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


def score_counts(session: Session, metric: Metric = Metric.PVAR) -> list[tuple[str, str, int | None, int]]:
    """(checkpoint, reward model, asking round or None, number of prompts) with a `metric` score."""
    stmt = (
        select(PromptScore.checkpoint_id, PromptScore.reward_model, PromptScore.round_id, func.count())
        .where(PromptScore.metric == metric)
        .group_by(PromptScore.checkpoint_id, PromptScore.reward_model, PromptScore.round_id)
    )
    return [tuple(row) for row in session.execute(stmt).all()]


def score_values(
    session: Session, checkpoint_id: str, reward_model: str, metric: Metric = Metric.PVAR
) -> dict[str, float]:
    """{prompt_id: value} of one metric for (checkpoint, reward model)."""
    stmt = select(PromptScore.prompt_id, PromptScore.value).where(
        PromptScore.checkpoint_id == checkpoint_id,
        PromptScore.reward_model == reward_model,
        PromptScore.metric == metric,
    )
    return dict(session.execute(stmt).all())


def scored_generations(
    session: Session, prompt_ids: Sequence[str], checkpoint_id: str, reward_model: str
) -> list[tuple[Generation, float]]:
    """(generation, reward) of the prompts' samples under one policy and reward model, by prompt and index."""
    return select_in(
        session,
        lambda chunk: (
            select(Generation, RewardScore.score)
            .join(RewardScore, RewardScore.generation_id == Generation.id)
            .where(
                Generation.checkpoint_id == checkpoint_id,
                RewardScore.reward_model == reward_model,
                Generation.prompt_id.in_(chunk),
            )
            .order_by(Generation.prompt_id, Generation.sample_index)
        ),
        prompt_ids,
    )


def scored_train_prompt_ids(session: Session, checkpoint_id: str, reward_model: str) -> list[str]:
    """Train prompts with a PVar score for (checkpoint, reward model)."""
    return list(
        session.scalars(
            select(PromptScore.prompt_id)
            .join(Prompt, Prompt.id == PromptScore.prompt_id)
            .where(
                PromptScore.checkpoint_id == checkpoint_id,
                PromptScore.reward_model == reward_model,
                PromptScore.metric == Metric.PVAR,
                Prompt.split == "train",
            )
        )
    )


def max_samples_per_prompt(session: Session, checkpoint_id: str) -> int | None:
    """The most generations any prompt has under the checkpoint (None without generations)."""
    per_prompt = (
        select(func.count().label("n"))
        .where(Generation.checkpoint_id == checkpoint_id)
        .group_by(Generation.prompt_id)
        .subquery()
    )
    return session.scalar(select(func.max(per_prompt.c.n)))


def train_samples(session: Session, checkpoint_id: str) -> list[tuple[str, dict[str, Any], int, str]]:
    """(prompt text, prompt metadata, sample index, response) of every train prompt's generations under the
    checkpoint, by prompt id and sample index."""
    stmt = (
        select(Prompt.text, Prompt.meta, Generation.sample_index, Generation.text)
        .join(Generation, Generation.prompt_id == Prompt.id)
        .where(Generation.checkpoint_id == checkpoint_id, Prompt.split == "train")
        .order_by(Prompt.id, Generation.sample_index)
    )
    return [tuple(row) for row in session.execute(stmt).all()]
