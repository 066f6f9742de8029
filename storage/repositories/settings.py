"""Repository for operator settings (loop_settings: budget and strategy from a round on). Takes a Session;
never commits.

`loop_settings.value` is text for every key; this module is the one place a value is converted: a budget is
written from an int and read back as one, a strategy stays its name (a loop.acquisition.strategies.Strategy
value), so callers never parse stored text.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import LoopSetting
from storage.statuses import PRODUCTION_ARM
from storage.upsert import upsert

BUDGET, STRATEGY = "budget", "strategy"  # loop_settings.key
KEYS = (BUDGET, STRATEGY)


def put_setting(
    session: Session, key: str, value: int | str, *, from_round: int, arm: str = PRODUCTION_ARM
) -> None:
    """Record `key = value` from round `from_round` on (a second value for the same round replaces the first).
    A budget must be an int, a strategy its name."""
    if key == BUDGET:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"the budget is stored from an int, got {value!r}")
        text = str(value)
    elif key == STRATEGY:
        text = str(value)
    else:
        raise ValueError(f"unknown setting {key!r}; allowed: {', '.join(KEYS)}")
    upsert(
        session,
        LoopSetting,
        [{"arm": arm, "key": key, "value": text, "from_round": from_round}],
        constraint="uq_loop_settings_key",
        update=["value"],
    )


def budget_for_round(session: Session, number: int, arm: str = PRODUCTION_ARM) -> int | None:
    """The budget last set for a round at or before `number`, if any."""
    text = _latest_value(session, BUDGET, number, arm)
    return None if text is None else int(text)


def strategy_for_round(session: Session, number: int, arm: str = PRODUCTION_ARM) -> str | None:
    """The strategy last set for a round at or before `number`, if any."""
    return _latest_value(session, STRATEGY, number, arm)


def _latest_value(session: Session, key: str, number: int, arm: str) -> str | None:
    return session.scalar(
        select(LoopSetting.value)
        .where(LoopSetting.arm == arm, LoopSetting.key == key, LoopSetting.from_round <= number)
        .order_by(LoopSetting.from_round.desc(), LoopSetting.id.desc())
        .limit(1)
    )
