"""Repository for the operators' action log (operator_actions: who did what, with what). Takes a Session; never
commits. Read back by storage.repositories.queries.recent_actions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from storage.models import OperatorAction


def add_operator_action(session: Session, actor: str, action: str, payload: dict[str, Any]) -> OperatorAction:
    """Record one operator action (e.g. "set budget", "cancel round", "experiment.reset-arm")."""
    row = OperatorAction(actor=actor, action=action, payload=payload)
    session.add(row)
    return row
