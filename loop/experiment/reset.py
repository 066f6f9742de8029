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

from storage.db import UnitOfWork
from storage.repositories.arms import delete_arm
from storage.repositories.operator_actions import add_operator_action
from storage.statuses import is_production_arm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArmReset:
    arm: str
    rounds: int
    checkpoints: int
    labels: int
    removed_dirs: list[str]


def reset_arm(uow: UnitOfWork, arm: str, *, data_dir: Path, actor: str = "experiment") -> ArmReset:
    """Delete everything arm `arm` produced (see the module docstring). Unknown arm: ValueError, nothing done."""
    if is_production_arm(arm):
        raise ValueError(f"arm {arm!r} is the production history; it is never reset")
    with uow() as session:
        deleted = delete_arm(session, arm)
        if deleted is None:
            raise ValueError(f"no rounds for arm {arm!r}; nothing to reset")
        rounds, ckpts, labels = deleted.rounds, deleted.checkpoints, deleted.labels
        ckpt_ids = [c for c, _ in ckpts]
        add_operator_action(
            session,
            actor,
            "experiment.reset-arm",
            {"arm": arm, "rounds": len(rounds), "checkpoints": ckpt_ids, "labels": labels},
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
