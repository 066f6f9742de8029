"""Sub-commands for operators and the scheduler: run, budget, strategy, round."""

from __future__ import annotations

import argparse
import json
import logging

from loop.cli.common import UserError, add_command, config_from, open_uow, print_json


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the structured fields a log call passed in `extra`."""

    FIELDS = ("event", "round", "from", "to")

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def cmd_run(args: argparse.Namespace) -> int:
    from loop.rounds.scheduler import run_scheduler
    from storage.locks import LockHeld

    if args.log_json:
        for h in logging.getLogger().handlers:
            h.setFormatter(JsonFormatter())
    cfg = config_from(args)
    try:
        return run_scheduler(cfg, args.config, wait=args.wait, once=args.once)
    except LockHeld as e:
        raise UserError(f"{e}. Stop it first, or pass --wait to take over when it stops.") from None


def cmd_budget(args: argparse.Namespace) -> int:
    return _set(args, "budget", args.value)


def cmd_strategy(args: argparse.Namespace) -> int:
    return _set(args, "strategy", args.value)


def _set(args: argparse.Namespace, key: str, value: str) -> int:
    from loop.rounds.operator_settings import set_setting
    from storage.repositories.prompts import count_train_prompts

    _, uow = open_uow(args)
    with uow() as session:
        start = set_setting(session, key, value, from_round=args.from_round)
        pool = count_train_prompts(session)
    print(f"{key} = {value} from round {start} on")
    if key == "budget" and int(value) == 0:
        print("budget 0: no new round will start until the budget is raised")
    elif key == "budget" and int(value) > pool:
        print(
            f"note: the pool has {pool} train prompts; a round takes what is left when the budget is larger"
        )
    return 0


def cmd_round(args: argparse.Namespace) -> int:
    from loop.rounds.state import cancel_round, start_round
    from storage.repositories import queries

    cfg, uow = open_uow(args)
    if args.round_command == "start":
        rnd, message = start_round(uow, cfg)
        if rnd is not None:
            with uow() as session:
                from loop.rounds.operator_settings import record_action

                record_action(session, "start round", {"round": rnd.number})
        print(message)
        return 0 if rnd is not None else 1
    if args.round_command == "cancel":
        print(cancel_round(uow, args.number, args.reason))
        return 0
    with uow() as session:
        rounds = queries.rounds_summary(session)
    if args.json:
        print_json(rounds)
    for r in [] if args.json else rounds:
        why = f" - {r['reason']}" if r["reason"] else ""
        print(
            f"round {r['number']}: {r['status']}{why} ({r['strategy']}, budget {r['budget']}, "
            f"{r['items']} items, {r['labels']} labels)"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(sub, "run", cmd_run, help="run the scheduler in the foreground (one per database)")
    s.add_argument("--wait", action="store_true", help="if another scheduler runs, wait and take over")
    s.add_argument("--once", action="store_true", help="one tick, then exit (cron-style use)")
    s.add_argument("--log-json", action="store_true", help="structured JSON logs, one object per line")

    for name, handler, what in (
        ("budget", cmd_budget, "labels per round (0 pauses new rounds)"),
        ("strategy", cmd_strategy, "selection strategy"),
    ):
        s = add_command(sub, name, handler, help=f"set the {what}")
        sp = s.add_subparsers(dest=f"{name}_command", required=True)
        p = sp.add_parser("set", help=f"set the {what} for the next round on")
        p.add_argument("value")
        p.add_argument("--from-round", type=int, help="first round it applies to (default: the next one)")

    s = add_command(sub, "round", cmd_round, help="start, cancel or list rounds")
    sp = s.add_subparsers(dest="round_command", required=True)
    sp.add_parser("start", help="start the next round now (the scheduler does this by itself)")
    p = sp.add_parser("cancel", help="cancel an open round; its prompts become selectable again")
    p.add_argument("number", type=int)
    p.add_argument("--reason", default="cancelled by operator")
    p = sp.add_parser("status", help="list rounds and why an open one waits")
    p.add_argument("--json", action="store_true")
