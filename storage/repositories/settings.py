"""Repository for operator settings (loop_settings: budget and strategy from a round on). Takes a Session;
never commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import LoopSetting
from storage.statuses import PRODUCTION_ARM


def setting_for_round(session: Session, key: str, number: int, arm: str = PRODUCTION_ARM) -> str | None:
    """The latest value of `key` set for a round at or before `number`, if any."""
    return session.scalar(
        select(LoopSetting.value)
        .where(LoopSetting.arm == arm, LoopSetting.key == key, LoopSetting.from_round <= number)
        .order_by(LoopSetting.from_round.desc(), LoopSetting.id.desc())
        .limit(1)
    )
