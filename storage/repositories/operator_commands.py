"""Repository for round commands queued for a running scheduler (operator_commands). Takes a Session; never
commits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import OperatorCommand
from storage.statuses import PRODUCTION_ARM, CommandState


def add_command(
    session: Session, command: str, round_number: int, actor: str, *, arm: str = PRODUCTION_ARM, reason=None
) -> OperatorCommand:
    row = OperatorCommand(command=command, round_number=round_number, arm=arm, actor=actor, reason=reason)
    session.add(row)
    session.flush()  # the id, which the operator is told
    return row


def pending_commands(session: Session) -> list[OperatorCommand]:
    """Pending commands, oldest first: the order they were given in."""
    query = select(OperatorCommand).where(OperatorCommand.state == CommandState.PENDING)
    return list(session.scalars(query.order_by(OperatorCommand.id)))


def finish_command(session: Session, command_id: int, state: CommandState, outcome: str) -> None:
    row = session.get(OperatorCommand, command_id)
    row.state, row.outcome, row.done_at = state, outcome[:2000], datetime.now(UTC)


def recent_commands(session: Session, limit: int = 10) -> list[dict[str, Any]]:
    """Every pending command and the latest finished ones, oldest first (what `status` lists)."""
    pending = pending_commands(session)
    finished = session.scalars(
        select(OperatorCommand)
        .where(OperatorCommand.state != CommandState.PENDING)
        .order_by(OperatorCommand.id.desc())
        .limit(limit)
    ).all()
    rows = sorted([*pending, *finished], key=lambda c: c.id)
    return [
        {
            "id": c.id,
            "command": c.command,
            "arm": c.arm,
            "round": c.round_number,
            "reason": c.reason,
            "actor": c.actor,
            "state": str(c.state),
            "outcome": c.outcome,
            "requested_at": c.requested_at.isoformat(timespec="seconds"),
            "done_at": c.done_at.isoformat(timespec="seconds") if c.done_at else None,
        }
        for c in rows
    ]
