"""What operators steer: the per-round budget of items and the selection strategy, set from a round on, and every
such action recorded (who / when / what) for `status`."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass

from sqlalchemy.orm import Session

from loop.acquisition.strategies import EXPERIMENT_ONLY, PRODUCTION_STRATEGIES, Strategy
from storage.errors import PvarLoopError
from storage.repositories import settings
from storage.repositories.operator_actions import add_operator_action
from storage.repositories.rounds import next_round_number
from storage.statuses import PRODUCTION_ARM

SETTING_KEYS = settings.KEYS


class OperatorError(PvarLoopError, ValueError):
    """An operator command that cannot be applied; the message says why and what is allowed."""


def actor() -> str:
    return os.environ.get("PVAR_LOOP_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def parse_budget(raw: str | int) -> int:
    text = str(raw).strip()
    try:
        value = int(text)
    except ValueError:
        raise OperatorError(
            f"budget must be a whole number of items (prompts sent for labelling), got {raw!r}"
        ) from None
    if value < 0:
        raise OperatorError(f"budget must be 0 (pause new rounds) or more, got {value}")
    return value


def parse_strategy(raw: str) -> Strategy:
    """A production strategy (what config `[selection] strategy` accepts too); experiment-only arms are refused
    by name, since their rounds would silently select like plain random."""
    allowed = ", ".join(PRODUCTION_STRATEGIES)
    if raw in EXPERIMENT_ONLY:
        raise OperatorError(
            f"strategy {raw!r} is an experiment-only arm (`pvar-loop experiment --arms {raw}`); "
            f"production rounds allow: {allowed}"
        )
    if raw not in PRODUCTION_STRATEGIES:
        raise OperatorError(f"unknown strategy {raw!r}; allowed: {allowed}")
    return Strategy(raw)


def set_setting(
    session: Session, key: str, value: str, *, from_round: int | None, arm: str = PRODUCTION_ARM
) -> int:
    """Record `key = value` from round `from_round` (default: the next round to start). Returns that round."""
    if key not in SETTING_KEYS:
        raise OperatorError(f"unknown setting {key!r}; allowed: {', '.join(SETTING_KEYS)}")
    parsed = parse_budget(value) if key == settings.BUDGET else parse_strategy(value)
    upcoming = next_round_number(session, arm)
    if from_round is None:
        from_round = upcoming
    elif from_round < upcoming:
        raise OperatorError(
            f"round {from_round} has already started; a {key} change applies from round {upcoming} on "
            f"(use --from-round {upcoming} or later)"
        )
    settings.put_setting(session, key, parsed, from_round=from_round, arm=arm)
    # The action records the value as text, as it always has ("6", "pvar").
    record_action(session, f"set {key}", {"value": str(parsed), "from_round": from_round, "arm": arm})
    return from_round


@dataclass(frozen=True)
class RoundPlan:
    number: int
    budget: int
    strategy: Strategy


def plan_for(
    session: Session, number: int, *, budget: int, strategy: Strategy, arm: str = PRODUCTION_ARM
) -> RoundPlan:
    """Round `number`'s budget and strategy: the operators' latest settings, else the config's."""
    set_budget = settings.budget_for_round(session, number, arm)
    set_strategy = settings.strategy_for_round(session, number, arm)
    return RoundPlan(
        number=number,
        budget=budget if set_budget is None else set_budget,
        strategy=Strategy(strategy if set_strategy is None else set_strategy),
    )


def record_action(session: Session, action: str, payload: dict) -> None:
    add_operator_action(session, actor(), action, payload)


def new_rounds_status(session: Session, cfg, arm: str = PRODUCTION_ARM) -> dict:
    """Whether the scheduler may start the next round, and with which budget and strategy; why not if paused."""
    number = next_round_number(session, arm)
    plan = plan_for(session, number, budget=cfg.selection.budget, strategy=cfg.selection.strategy, arm=arm)
    if plan.budget == 0:
        return {
            "paused": True,
            "why": f"budget is 0 from round {number}; `pvar-loop budget set N` resumes",
            "next_round": number,
        }
    return {"paused": False, "next_round": number, "budget": plan.budget, "strategy": str(plan.strategy)}
