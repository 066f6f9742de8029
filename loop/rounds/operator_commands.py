"""Round commands given while `pvar-loop run` is up: `round cancel N` and `round advance N` are recorded in the
database (operator_commands) instead of refused, and the scheduler carries them out at its next tick, under its
lease: its unit of work is fenced, so a scheduler that lost the lease records neither the step nor the outcome."""

from __future__ import annotations

import logging

from loop.config import Config
from loop.rounds.exclusions import REDECIDE, redecide_round
from loop.rounds.operator_settings import actor
from storage.db import UnitOfWork
from storage.errors import PvarLoopError
from storage.locks import LeaseLost
from storage.repositories.operator_commands import add_command, finish_command, pending_commands
from storage.repositories.rounds import round_by_number
from storage.statuses import PRODUCTION_ARM, CommandState

log = logging.getLogger(__name__)

CANCEL, ADVANCE = "cancel", "advance"


def queue_command(
    uow: UnitOfWork, command: str, number: int, *, arm: str = PRODUCTION_ARM, reason: str | None = None
) -> int:
    """Record `command` on round `number` for the running scheduler; returns its id. A round that does not
    exist or is closed is refused now, not at the tick."""
    from loop.rounds.state import RoundError

    with uow() as session:
        rnd = round_by_number(session, number, arm)
        if rnd is None:
            raise RoundError(f"no round {number}")
        if rnd.status.is_closed:
            raise RoundError(f"round {number} is already {rnd.status}")
        return add_command(session, command, number, actor(), arm=arm, reason=reason).id


def describe(command: str, number: int, reason: str | None = None) -> str:
    what = f"{command} round {number}"
    return what + (f" ({reason})" if reason else "")


def carry_out_pending(uow: UnitOfWork, cfg: Config, services) -> int:
    """Carry out the pending commands in the order given, each outcome recorded and logged. Returns how many
    ran. LeaseLost propagates: another scheduler now drives the rounds and finds the commands still pending."""
    with uow() as session:
        todo = [
            (c.id, c.command, c.round_number, c.arm, c.reason, c.actor) for c in pending_commands(session)
        ]
    for command_id, command, number, arm, reason, who in todo:
        try:
            outcome, state = _run(uow, cfg, services, command, number, arm, reason), CommandState.DONE
        except LeaseLost:
            raise
        except PvarLoopError as e:
            outcome, state = str(e), CommandState.FAILED
        except Exception as e:  # a failed step is recorded on the round too (state._recorded_step)
            outcome, state = f"{type(e).__name__}: {e}", CommandState.FAILED
        with uow() as session:
            finish_command(session, command_id, state, outcome)
        log.log(
            logging.INFO if state == CommandState.DONE else logging.ERROR,
            "operator command #%s by %s, %s: %s: %s",
            command_id,
            who,
            describe(command, number, reason),
            state,
            outcome,
            extra={"event": "operator command", "round": number},
        )
    return len(todo)


def _run(uow: UnitOfWork, cfg: Config, services, command: str, number: int, arm: str, reason) -> str:
    from loop.rounds.state import advance_round, cancel_round

    if command == CANCEL:
        return (
            f"{cancel_round(uow, number, reason or 'cancelled by operator', arm)}; {withdraw_text(cfg, uow)}"
        )
    if command == REDECIDE:  # an annotator excluded or included
        return redecide_round(cfg, uow, number, arm)
    if command == ADVANCE:
        before, after = advance_round(uow, cfg, number, services, arm=arm)
        return f"round {number}: " + (f"{before} -> {after}" if after != before else f"still {after}")
    raise PvarLoopError(f"unknown operator command {command!r}")


def withdraw_text(cfg: Config, uow: UnitOfWork) -> str:
    """Take a cancelled round's waiting records out of the annotators' queue (answers so far are stored
    first), and say what happened. The cancel stands when Argilla cannot be reached: the next push or pull
    (by hand or by the scheduler) withdraws them before anything else."""
    from loop.rounds.steps import withdraw

    try:
        report = withdraw(cfg, uow)
    except LeaseLost:
        raise
    except PvarLoopError as e:
        return (
            f"its records stay in Argilla's queue for now ({e}); the next `pvar-loop push` or "
            "`pull` (or the scheduler's) removes them"
        )
    evaluations = (
        f"; withdrew {report.evaluation_records} records of its human evaluation (answers stored first)"
        if report is not None and report.evaluation_records
        else ""
    )
    if report is None or not report.withdrawn:
        return "no records of it were waiting in Argilla" + evaluations
    return (
        f"withdrew {report.withdrawn} waiting records from Argilla ({report.labels} answers on them stored "
        "first; kept, not trained on)" + evaluations
    )
