"""`pvar-loop annotators exclude NAME [--reason TEXT]` / `include NAME` (loop.rounds.exclusions): stop or resume
counting one annotator's answers; the rounds open now are decided again at once, by hand or, while
`pvar-loop run` holds the lease, by the scheduler at its next tick."""

from __future__ import annotations

import argparse

from loop.cli.common import UserError, holding_lease, open_engine


def register(an: argparse._SubParsersAction) -> None:
    ex = an.add_parser(
        "exclude",
        help="stop counting an annotator's answers in the decisions of open and later rounds (kept, exported "
        "flagged; closed rounds stay as decided)",
    )
    ex.add_argument("name", help="username")
    ex.add_argument("--reason", help="why (shown in `status`)")
    inc = an.add_parser("include", help="count an excluded annotator's answers again (open and later rounds)")
    inc.add_argument("name", help="username")


def cmd_exclusion(args: argparse.Namespace, cfg) -> int:
    from loop.rounds.exclusions import queue_redecide, redecide_all, set_excluded
    from loop.rounds.operator_settings import OperatorError
    from loop.rounds.scheduler import running_scheduler
    from storage.db import UnitOfWork

    uow = UnitOfWork(open_engine(cfg))
    exclude = args.annotators_command == "exclude"
    known = _workspace_annotators(cfg)

    def record() -> None:
        try:
            reason = args.reason if exclude else None
            print(set_excluded(uow, args.name, known, exclude=exclude, reason=reason))
        except OperatorError as e:
            raise UserError(str(e)) from e

    with uow() as session:
        holder = running_scheduler(session, cfg)
    if holder is not None:
        record()
        ids = queue_redecide(uow, args.name)
        if ids:
            print(
                f"scheduler {holder} is running: recorded operator commands {', '.join(f'#{i}' for i in ids)} "
                "(redecide the open rounds); it carries them out at its next tick and `pvar-loop status` shows "
                "them"
            )
        return 0
    # The lease first: another by-hand command holding it refuses this one before anything is recorded, so
    # a rerun later excludes and re-decides (recorded first, a rerun would only say "already excluded").
    with holding_lease(cfg, uow):
        record()
        for line in redecide_all(cfg, uow):
            print(line)
    return 0


def _workspace_annotators(cfg) -> set[str]:
    """The annotators of the project's Argilla workspace; none when Argilla is not reached (then a name is
    known by its stored answers only)."""
    from annotation.annotators import workspace_members
    from loop.argilla_client import connect_client
    from storage.errors import PvarLoopError

    try:
        client = connect_client(cfg)
        return {m.username for m in workspace_members(client.http_client, cfg.argilla.workspace)}
    except (PvarLoopError, OSError):
        return set()
