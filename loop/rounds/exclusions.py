"""`annotators exclude NAME` / `include NAME`: stop (or resume) counting one annotator's answers.

The exclusion itself is recorded at once (who, since when, by whom, why; an operator action too): from then
on every pull leaves that annotator's answers out of the decisions of rounds that still collect. The rounds
open now are decided again at once, and items left short of `min_submitted` counted answers go back into the
other annotators' queue (annotation.exclusions). While `pvar-loop run` holds the lease, that round work is
queued for it (operator_commands, `redecide`) like a cancel, so one driver writes the rounds. Closed rounds
keep their decisions: they are the record of what was trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from loop.config import Config
from loop.rounds.operator_settings import OperatorError, actor, record_action
from storage.db import UnitOfWork
from storage.errors import PvarLoopError
from storage.locks import LeaseLost
from storage.repositories import exclusions as repo
from storage.repositories.items import collecting_rounds
from storage.repositories.operator_commands import add_command
from storage.repositories.queries import answers_per_annotator

log = logging.getLogger(__name__)

REDECIDE = "redecide"  # the operator command that decides an open round again (loop.rounds.operator_commands)


@dataclass(frozen=True)
class OpenRound:
    id: int
    arm: str
    number: int


def open_rounds(session) -> list[OpenRound]:
    from storage.models import Round

    return [
        OpenRound(rid, (r := session.get(Round, rid)).arm, r.number)
        for rid in sorted(collecting_rounds(session))
    ]


def set_excluded(uow: UnitOfWork, name: str, known: set[str], *, exclude: bool, reason: str | None) -> str:
    """Record the exclusion (or its end) and the operator action; refuses an unknown name, an annotator
    excluded already (exclude) or not excluded (include). Returns the sentence to print."""
    with uow() as session:
        if name not in known | {a["username"] for a in answers_per_annotator(session)}:
            raise OperatorError(
                f"unknown annotator {name!r}: not an annotator of the workspace and no stored answers "
                "(`pvar-loop annotators list`)"
            )
        current = repo.current_exclusion(session, name)
        if exclude:
            if current is not None:
                raise OperatorError(
                    f"annotator {name!r} is already excluded (since {current.excluded_at:%Y-%m-%d %H:%M:%S} "
                    f"UTC, by {current.excluded_by}); `pvar-loop annotators include {name}` ends it"
                )
            row = repo.add_exclusion(session, name, actor(), reason)
            record_action(session, "exclude annotator", {"annotator": name, "reason": reason})
            return f"excluded annotator {name!r} since {row.excluded_at:%Y-%m-%d %H:%M:%S} UTC" + (
                f" ({reason})" if reason else ""
            )
        if current is None:
            raise OperatorError(f"annotator {name!r} is not excluded")
        repo.end_exclusion(session, name, actor())
        record_action(session, "include annotator", {"annotator": name})
        return f"annotator {name!r} counts again (excluded since {current.excluded_at:%Y-%m-%d %H:%M:%S} UTC)"


def queue_redecide(uow: UnitOfWork, name: str) -> list[int]:
    """For a running scheduler: one `redecide` command per open round (loop.rounds.operator_commands
    carries them out at its tick); returns their ids."""
    with uow() as session:
        return [
            add_command(session, REDECIDE, r.number, actor(), arm=r.arm, reason=f"annotator {name}").id
            for r in open_rounds(session)
        ]


def redecide_all(cfg: Config, uow: UnitOfWork) -> list[str]:
    """Every open round decided again and its short items placed again (by hand: the caller holds the
    lease); one line per round."""
    with uow() as session:
        rounds = open_rounds(session)
    if not rounds:
        return ["no open round to decide again; later rounds count only the annotators not excluded"]
    return [redecide_round(cfg, uow, r.number, r.arm) for r in rounds]


def redecide_round(cfg: Config, uow: UnitOfWork, number: int, arm: str) -> str:
    """Decide round `number` again from the stored answers (at once, no Argilla needed), then put its items
    that lack counted answers back in the other annotators' queue: pull the newest answers, place the items
    again (blind overlap) or release the excluded annotators' responses (shared dataset)."""
    from annotation.blind import blind
    from annotation.exclusions import redecide, release_shared
    from annotation.gateway import pull_labels, push_items
    from loop.argilla_client import connect_dataset
    from loop.rounds.steps import push_order, record_overlap
    from storage.repositories.rounds import round_by_number

    with uow() as session:
        round_id = round_by_number(session, number, arm).id
        report = redecide(
            session,
            round_id,
            fallback=cfg.argilla.min_submitted,
            method=cfg.argilla.aggregation,
            min_confidence=cfg.argilla.min_confidence,
        )
    line = (
        f"round {number}: decided again: {report.decided} decided ({report.ties} ties), "
        f"{report.undecided} undecided, {report.waiting} waiting for answers"
    )
    try:
        dataset = connect_dataset(cfg, record_overlap(cfg, uow, round_id))
        pulled = pull_labels(
            uow,
            dataset,
            round_id,
            aggregation=cfg.argilla.aggregation,
            min_confidence=cfg.argilla.min_confidence,
        )
        if blind(dataset):
            placed = push_items(uow, dataset, round_id, order=push_order(cfg, uow, round_id))
            return f"{line}; {placed.pushed} items placed with other annotators"
        released = release_shared(uow, dataset, round_id, pulled.response_ids)
        return f"{line}; {released} records back in the annotators' queue"
    except LeaseLost:
        raise
    except PvarLoopError as e:  # Argilla down, no API key configured...: the decisions stand
        return f"{line}; Argilla not reached ({e}): the next push or pull places the waiting items"
