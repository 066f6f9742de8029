"""A human evaluation's records in the annotators' queue get the care a round's items get: a deadline like
collection's (`[evaluation] human_deadline_hours` from when its comparisons were stored: past it, the win
rate is stored over the comparisons answered so far, and the unanswered records leave the queue), withdrawal
when the checkpoint's round is cancelled (answers pulled first, kept), and excluded annotators left out.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from loop.config import Config
from loop.evaluation.human import Compared, outcome, settled
from storage.db import UnitOfWork
from storage.models import EvalComparison
from storage.repositories import eval_comparisons as repo

log = logging.getLogger(__name__)


def eval_dataset_name(cfg: Config) -> str:
    """The Argilla dataset of the human evaluations: the preference dataset's name with `-eval`."""
    return f"{cfg.argilla.dataset}-eval"


def counted(rows: list[EvalComparison], excluded: Collection[str] = frozenset()) -> list[Compared]:
    """The comparisons as the win rate sees them: answers of excluded annotators left out."""
    return [
        Compared(
            c.prompt_id,
            c.policy_side,
            {who: v for who, v in (c.answers or {}).items() if who not in excluded},
            c.min_submitted,
        )
        for c in rows
    ]


def deadline(cfg: Config, rows: list[EvalComparison]) -> datetime | None:
    """When the evaluation stops waiting for every answer: its comparisons' storing time plus the hours."""
    if not rows:
        return None
    start = min(c.created_at for c in rows)
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    return start + timedelta(hours=cfg.evaluation.human_deadline_hours)


def past_deadline(cfg: Config, rows: list[EvalComparison], now: datetime | None = None) -> bool:
    due = deadline(cfg, rows)
    return due is not None and (now or datetime.now(UTC)) >= due


def answered(compared: list[Compared]) -> int:
    """Comparisons with at least one vote (a discard alone is not one)."""
    return sum(outcome(c.answers) is not None for c in compared)


def unanswered_records(rows: list[EvalComparison], compared: list[Compared]) -> dict[str, str]:
    """{comparison id: record id} of the comparisons still short of their overlap, still in Argilla."""
    return {
        r.id: r.argilla_record_id
        for r, c in zip(rows, compared, strict=True)
        if r.argilla_record_id and not settled(c)
    }


def withdraw_cancelled_evaluations(cfg: Config, uow: UnitOfWork) -> int:
    """Take the records of human evaluations whose round was cancelled (or failed), and the unanswered ones
    of evaluations stored past their deadline, out of Argilla, their answers pulled and stored first. No Argilla call when there is nothing to withdraw. Returns the records
    deleted."""
    from annotation.dataset import open_dataset
    from annotation.eval_gateway import pull_comparisons, withdraw_comparisons
    from loop.argilla_client import connect_client

    with uow() as session:
        todo = repo.comparisons_to_withdraw(session)
    if not todo:
        return 0
    dataset = open_dataset(connect_client(cfg), eval_dataset_name(cfg), cfg.argilla.workspace)
    if dataset is None:  # the dataset is gone: nothing of it waits in a queue
        with uow() as session:
            repo.mark_withdrawn(session, [cid for records in todo.values() for cid in records])
        return 0
    deleted = 0
    for (checkpoint, reference), records in todo.items():
        pull_comparisons(uow, dataset, checkpoint, reference)
        what = f"withdraw human evaluation records of {checkpoint} (round cancelled or deadline passed)"
        deleted += withdraw_comparisons(uow, dataset, records, what=what)
    log.info(
        "withdrew %d human evaluation records (cancelled rounds, deadlines passed) from Argilla", deleted
    )
    return deleted
