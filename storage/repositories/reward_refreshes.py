"""Repository for selection reward-model refreshes (one row per round). Takes a Session; never commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import RewardRefresh, Round


def refresh_of_round(session: Session, round_id: int) -> RewardRefresh | None:
    return session.scalar(select(RewardRefresh).where(RewardRefresh.round_id == round_id))


def add_refresh(session: Session, **values: Any) -> RewardRefresh:
    row = RewardRefresh(**values)
    session.add(row)
    session.flush()
    return row


def kept_reward_model(session: Session, base_model: str) -> str | None:
    """The candidate of the newest kept refresh that started from `base_model`, or None if none was kept."""
    return session.scalar(
        select(RewardRefresh.candidate_model)
        .where(RewardRefresh.kept.is_(True), RewardRefresh.base_model == base_model)
        .order_by(RewardRefresh.id.desc())
        .limit(1)
    )


def refresh_rows(session: Session) -> list[dict[str, Any]]:
    """Every refresh, by round, as plain values (what `status --json` and the report show)."""
    stmt = (
        select(RewardRefresh, Round.arm, Round.number)
        .join(Round, Round.id == RewardRefresh.round_id)
        .order_by(Round.arm, Round.number)
    )
    return [
        {
            "arm": arm,
            "round": number,
            "old_agreement": r.old_agreement,
            "new_agreement": r.new_agreement,
            "kept": r.kept,
            "n_pairs": r.n_pairs,
            "n_train": r.n_train,
            "n_heldout": r.n_heldout,
            "previous_model": r.previous_model,
            "candidate_model": r.candidate_model,
            "reason": r.reason,
            "seconds": r.seconds,
        }
        for r, arm, number in session.execute(stmt)
    ]
