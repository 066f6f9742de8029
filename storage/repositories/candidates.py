"""Repository for selection: the scored train prompts an arm may still pick, with their PVar and reward gap, and
a round's candidate set ([selection] candidates) with what scoring it cost. Takes a Session; never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, and_, func, insert, select, union, update
from sqlalchemy.orm import Session, aliased

from storage.models import (
    AnnotationItem,
    Checkpoint,
    Label,
    Prompt,
    PromptScore,
    Round,
    RoundCandidate,
    RoundScoring,
)
from storage.statuses import PRODUCTION_ARM, Metric, RoundStatus


@dataclass(frozen=True)
class CandidateRow:
    prompt_id: str
    pvar: float
    reward_gap: float
    disagree: float | None = None


def taken_prompt_ids(arm: str = PRODUCTION_ARM) -> Select:
    """Prompts arm `arm` may not select again: in one of its rounds that is not cancelled/failed, or labelled
    in one of its rounds.

    A cancelled or failed round frees its prompts unless somebody already labelled them. Arms are separate
    policy lineages drawing from the same pool: another arm's rounds and labels take nothing from this one
    (production has the single arm 'main').
    """
    in_open_round = (
        select(AnnotationItem.prompt_id)
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(Round.arm == arm, Round.status.not_in(RoundStatus.freeing_states()))
    )
    labelled = (
        select(AnnotationItem.prompt_id)
        .join(Label, Label.item_id == AnnotationItem.id)
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(Round.arm == arm)
    )
    return select(union(in_open_round, labelled).subquery().c[0])


def candidate_scores(
    session: Session,
    checkpoint_id: str,
    reward_model: str,
    arm: str = PRODUCTION_ARM,
    round_id: int | None = None,
) -> list[CandidateRow]:
    """pvar and reward_gap (and disagree, where an experiment stored it) of every scored train prompt not taken
    by `arm`, for (checkpoint, reward model); with round_id, only the round's drawn candidates."""
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
        .join(gap, same_prompt(gap, Metric.REWARD_GAP))
        .outerjoin(dis, same_prompt(dis, Metric.DISAGREE))
        .join(Prompt, Prompt.id == pvar.prompt_id)
        .where(
            pvar.checkpoint_id == checkpoint_id,
            pvar.reward_model == reward_model,
            pvar.metric == Metric.PVAR,
            Prompt.split == "train",
            pvar.prompt_id.not_in(taken_prompt_ids(arm)),
        )
        .order_by(pvar.prompt_id)
    )
    if round_id is not None:
        stmt = stmt.join(
            RoundCandidate,
            and_(RoundCandidate.prompt_id == pvar.prompt_id, RoundCandidate.round_id == round_id),
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
            PromptScore.metric == Metric.PVAR,
        )
    )
    return session.scalar(stmt) or 0


def scored_pairs(session: Session) -> list[tuple[str, str, int]]:
    """(checkpoint_id, reward_model, prompts with pvar) of every pair with scores, newest checkpoint first."""
    stmt = (
        select(PromptScore.checkpoint_id, PromptScore.reward_model, func.count())
        .join(Checkpoint, Checkpoint.id == PromptScore.checkpoint_id)
        .where(PromptScore.metric == Metric.PVAR)
        .group_by(PromptScore.checkpoint_id, PromptScore.reward_model, Checkpoint.created_at)
        .order_by(Checkpoint.created_at.desc(), PromptScore.checkpoint_id, PromptScore.reward_model)
    )
    return [(c, r, n) for c, r, n in session.execute(stmt).all()]


def count_free_prompts(session: Session, arm: str = PRODUCTION_ARM) -> int:
    """Train prompts `arm` may still take (scored or not): what a round's candidates are drawn from."""
    stmt = select(func.count()).select_from(Prompt).where(*_free(arm))
    return session.scalar(stmt) or 0


def free_prompt_ids_at(session: Session, positions: Sequence[int], arm: str = PRODUCTION_ARM) -> list[str]:
    """The free train prompts at these 0-based positions of the id order (positions sorted ascending),
    streamed so a million-prompt pool is never held in memory."""
    wanted, out = iter(positions), []
    target = next(wanted, None)
    stmt = select(Prompt.id).where(*_free(arm)).order_by(Prompt.id)
    result = session.scalars(stmt.execution_options(yield_per=10_000))
    try:
        for index, prompt_id in enumerate(result):
            if target is None:
                break
            if index == target:
                out.append(prompt_id)
                target = next(wanted, None)
    finally:
        result.close()
    return out


def _free(arm: str) -> tuple:
    return Prompt.split == "train", Prompt.id.not_in(taken_prompt_ids(arm))


def round_scoring(session: Session, round_id: int) -> RoundScoring | None:
    return session.get(RoundScoring, round_id)


def record_candidates(
    session: Session, round_id: int, *, asked: int | None, free_pool: int, prompt_ids: Sequence[str]
) -> None:
    """Store the round's candidate draw (asked None: the whole pool, no candidate rows); a round's empty draw is
    replaced (drawn again once the pool has prompts)."""
    row = session.get(RoundScoring, round_id)
    if row is None:
        row = RoundScoring(round_id=round_id)
        session.add(row)
    row.candidates, row.free_pool = asked, free_pool
    row.drawn = len(prompt_ids) if asked is not None else None
    session.flush()
    if asked is not None and prompt_ids:
        session.execute(insert(RoundCandidate), [{"round_id": round_id, "prompt_id": p} for p in prompt_ids])


def round_candidate_ids(session: Session, round_id: int) -> list[str]:
    stmt = select(RoundCandidate.prompt_id).where(RoundCandidate.round_id == round_id)
    return list(session.scalars(stmt.order_by(RoundCandidate.prompt_id)))


def add_scoring_cost(
    session: Session, round_id: int, *, prompts: int, samples: int, tokens: int, seconds: float
) -> None:
    """Add one committed batch's work to the round's scoring cost (a row is made for a round that drew
    nothing, e.g. an experiment's own scoring service)."""
    if session.get(RoundScoring, round_id) is None:
        session.add(RoundScoring(round_id=round_id))
        session.flush()
    session.execute(
        update(RoundScoring)
        .where(RoundScoring.round_id == round_id)
        .values(
            prompts_scored=RoundScoring.prompts_scored + prompts,
            samples_generated=RoundScoring.samples_generated + samples,
            tokens_generated=RoundScoring.tokens_generated + tokens,
            scoring_s=RoundScoring.scoring_s + seconds,
        )
    )


def scoring_costs(session: Session) -> dict[int, dict]:
    """{round id: its candidate draw and scoring cost} for every round with a scoring record."""
    return {
        r.round_id: {
            "candidates": r.candidates,
            "free_pool": r.free_pool,
            "drawn": r.drawn,
            "prompts_scored": r.prompts_scored,
            "samples_generated": r.samples_generated,
            "tokens_generated": r.tokens_generated,
            "scoring_s": r.scoring_s,
        }
        for r in session.scalars(select(RoundScoring))
    }
