"""Repository for selection: the scored train prompts an arm may still pick, with their PVar and reward gap.
Takes a Session; never commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, and_, func, select, union
from sqlalchemy.orm import Session, aliased

from storage.models import AnnotationItem, Checkpoint, Label, Prompt, PromptScore, Round
from storage.repositories.scores import DISAGREE, PVAR, REWARD_GAP
from storage.statuses import RoundStatus


@dataclass(frozen=True)
class CandidateRow:
    prompt_id: str
    pvar: float
    reward_gap: float
    disagree: float | None = None


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
