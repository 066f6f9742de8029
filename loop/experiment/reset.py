"""Forget one experiment arm, so it can be run again (e.g. after its definition changed): its rounds, items,
labels, training runs, the checkpoints it trained with their samples, scores and evaluations, and its settings.

What other arms share stays: the initial policy's samples and scores (scores the arm asked for are kept, only
unlinked from its rounds). The production arm "main" is refused. The reset is one transaction and is recorded
as an operator action; the arm's checkpoint directories are removed only after it commits.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, or_, select, update

from storage.db import UnitOfWork
from storage.models import (
    AnnotationItem,
    Checkpoint,
    Evaluation,
    Generation,
    Label,
    LoopSetting,
    OperatorAction,
    PromptScore,
    RewardScore,
    Round,
    TrainingRun,
)

log = logging.getLogger("pvar_loop.experiment")


@dataclass(frozen=True)
class ArmReset:
    arm: str
    rounds: int
    checkpoints: int
    labels: int
    removed_dirs: list[str]


def reset_arm(uow: UnitOfWork, arm: str, *, data_dir: Path, actor: str = "experiment") -> ArmReset:
    """Delete everything arm `arm` produced (see the module docstring). Unknown arm: ValueError, nothing done."""
    if arm == "main":
        raise ValueError("arm 'main' is the production history; it is never reset")
    with uow() as session:
        rounds = list(session.scalars(select(Round.id).where(Round.arm == arm)))
        if not rounds:
            raise ValueError(f"no rounds for arm {arm!r}; nothing to reset")
        ckpts = session.execute(
            select(Checkpoint.id, Checkpoint.path).where(Checkpoint.round_id.in_(rounds))
        ).all()
        ckpt_ids = [c for c, _ in ckpts]
        gens = select(Generation.id).where(Generation.checkpoint_id.in_(ckpt_ids))
        items = select(AnnotationItem.id).where(AnnotationItem.round_id.in_(rounds))
        labels = session.execute(delete(Label).where(Label.item_id.in_(items))).rowcount
        session.execute(delete(AnnotationItem).where(AnnotationItem.round_id.in_(rounds)))
        session.execute(delete(RewardScore).where(RewardScore.generation_id.in_(gens)))
        session.execute(delete(PromptScore).where(PromptScore.checkpoint_id.in_(ckpt_ids)))
        # Scores of shared checkpoints (the initial policy) that this arm's rounds asked for stay, unlinked.
        session.execute(update(PromptScore).where(PromptScore.round_id.in_(rounds)).values(round_id=None))
        session.execute(delete(Evaluation).where(Evaluation.checkpoint_id.in_(ckpt_ids)))
        session.execute(
            delete(TrainingRun).where(
                or_(TrainingRun.round_id.in_(rounds), TrainingRun.checkpoint_id.in_(ckpt_ids))
            )
        )
        session.execute(delete(Round).where(Round.id.in_(rounds)))
        session.execute(delete(Generation).where(Generation.checkpoint_id.in_(ckpt_ids)))
        session.execute(delete(Checkpoint).where(Checkpoint.id.in_(ckpt_ids)))
        session.execute(delete(LoopSetting).where(LoopSetting.arm == arm))
        session.add(
            OperatorAction(
                actor=actor,
                action="experiment.reset-arm",
                payload={"arm": arm, "rounds": len(rounds), "checkpoints": ckpt_ids, "labels": labels},
            )
        )
    removed = []
    root = Path(data_dir).resolve()
    for _, path in ckpts:
        target = Path(path).resolve()
        if target.is_dir() and root in target.parents:  # never a directory outside the project's data dir
            shutil.rmtree(target)
            removed.append(str(target))
    log.info("reset arm %s: %d rounds, %d checkpoints, %d labels", arm, len(rounds), len(ckpt_ids), labels)
    return ArmReset(arm, len(rounds), len(ckpt_ids), labels, removed)
