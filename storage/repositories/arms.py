"""Repository for experiment arms as a whole: deleting everything one arm produced (loop.experiment.reset).
Takes a Session; never commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from storage.models import (
    AnnotationItem,
    Checkpoint,
    DecisionLabel,
    DpoMargin,
    Evaluation,
    Generation,
    Label,
    LoopSetting,
    PromptScore,
    RewardExclusion,
    RewardScore,
    Round,
    RoundCandidate,
    RoundScoring,
    TrainingRun,
)
from storage.repositories.evaluations import delete_evaluations


@dataclass(frozen=True)
class DeletedArm:
    rounds: list[int]  # ids of its (now deleted) rounds
    checkpoints: list[tuple[str, str]]  # (id, path) of the checkpoints its rounds trained
    labels: int


def delete_arm(session: Session, arm: str) -> DeletedArm | None:
    """Delete the arm's rounds, items, labels, training runs, trained checkpoints with their samples, scores
    and evaluations, and its settings. Scores of shared checkpoints its rounds asked for stay, unlinked.
    None (nothing deleted) when the arm has no rounds."""
    rounds = list(session.scalars(select(Round.id).where(Round.arm == arm)))
    if not rounds:
        return None
    ckpts = [
        (c, p)
        for c, p in session.execute(
            select(Checkpoint.id, Checkpoint.path).where(Checkpoint.round_id.in_(rounds))
        ).all()
    ]
    ckpt_ids = [c for c, _ in ckpts]
    gens = select(Generation.id).where(Generation.checkpoint_id.in_(ckpt_ids))
    items = select(AnnotationItem.id).where(AnnotationItem.round_id.in_(rounds))
    session.execute(delete(DecisionLabel).where(DecisionLabel.item_id.in_(items)))
    labels = session.execute(delete(Label).where(Label.item_id.in_(items))).rowcount
    session.execute(delete(DpoMargin).where(DpoMargin.item_id.in_(items)))
    session.execute(delete(AnnotationItem).where(AnnotationItem.round_id.in_(rounds)))
    session.execute(delete(RewardScore).where(RewardScore.generation_id.in_(gens)))
    session.execute(delete(RewardExclusion).where(RewardExclusion.generation_id.in_(gens)))
    session.execute(delete(PromptScore).where(PromptScore.checkpoint_id.in_(ckpt_ids)))
    # Scores of shared checkpoints (the initial policy) that this arm's rounds asked for stay, unlinked.
    session.execute(update(PromptScore).where(PromptScore.round_id.in_(rounds)).values(round_id=None))
    # Their samples too; reference samples that other arms' evaluations reuse move to one of those first.
    evals = session.scalars(select(Evaluation.id).where(Evaluation.checkpoint_id.in_(ckpt_ids))).all()
    delete_evaluations(session, evals)
    session.execute(
        delete(TrainingRun).where(
            or_(TrainingRun.round_id.in_(rounds), TrainingRun.checkpoint_id.in_(ckpt_ids))
        )
    )
    session.execute(delete(RoundCandidate).where(RoundCandidate.round_id.in_(rounds)))
    session.execute(delete(RoundScoring).where(RoundScoring.round_id.in_(rounds)))
    session.execute(delete(Round).where(Round.id.in_(rounds)))
    session.execute(delete(Generation).where(Generation.checkpoint_id.in_(ckpt_ids)))
    session.execute(delete(Checkpoint).where(Checkpoint.id.in_(ckpt_ids)))
    session.execute(delete(LoopSetting).where(LoopSetting.arm == arm))
    return DeletedArm(rounds, ckpts, labels)
