"""Sub-commands for operators and the scheduler: run, budget, strategy, round."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from loop.cli.common import (
    UserError,
    add_command,
    config_from,
    holding_lease,
    open_engine,
    open_uow,
    print_json,
)
from storage.statuses import PRODUCTION_ARM


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
    if not sys.stderr.isatty():
        # Library progress bars (model loading, tokenizing, the DPO trainer) redraw with carriage returns: noise
        # in a log file. Our own long steps log a progress line instead (loop.progress).
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cfg = config_from(args)
    open_engine(cfg).dispose()  # a missing, unusable or unmigrated database: one line, and no empty file
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
    print(f"{key} = {value}{' items' if key == 'budget' else ''} from round {start} on")
    if key == "budget" and int(value) == 0:
        print("budget 0: no new round will start until the budget is raised")
    elif key == "budget" and int(value) > pool:
        print(
            f"note: the pool has {pool} train prompts; a round takes what is left when the budget is larger"
        )
    return 0


def cmd_round(args: argparse.Namespace) -> int:
    from loop.rounds.state import cancel_round, start_round

    cfg, uow = open_uow(args)
    if args.round_command == "start":
        rnd, message = start_round(uow, cfg)
        if rnd is None:  # one round at a time, or new rounds paused: a refusal like every other
            raise UserError(message)
        with uow() as session:
            from loop.rounds.operator_settings import record_action

            record_action(session, "start round", {"round": rnd.number})
        print(f"{message}\nnext: {_next_line(cfg, uow, rnd.number)}")
        return 0
    if args.round_command == "cancel":
        if _queued_for_scheduler(args, cfg, uow):
            return 0
        with holding_lease(cfg, uow):  # a by-hand transition: not while a scheduler works on the round
            print(cancel_round(uow, args.number, args.reason))
        print(_withdraw_after_cancel(cfg, uow))
        return 0
    if args.round_command == "advance":
        if _queued_for_scheduler(args, cfg, uow):
            return 0
        return _advance(args, cfg, uow)
    rounds = rounds_with_next(cfg, uow)
    if args.json:
        print_json(rounds)
        return 0
    for line in units_lines(rounds):
        print(line)
    for r in rounds:
        print(f"round {r['number']}: {r['status']} ({r['strategy']}, budget {r['budget']}, {_numbers(r)})")
        if r["reason"]:
            print(f"  {r['reason']}")
        if r["next"] is not None:
            print(f"  {describe_next(r['next'])}")
        for line in round_link_lines(r):
            print(f"  {line}")
    if not any(r["next"] for r in rounds):
        print("no open round; next: pvar-loop round start")
    return 0


def _withdraw_after_cancel(cfg, uow) -> str:
    """Take the cancelled round's waiting records out of the annotators' queue (what it did, or a warning)."""
    from loop.rounds.operator_commands import withdraw_text

    text = withdraw_text(cfg, uow)
    return f"warning: {text}" if text.startswith("its records stay") else text


def _queued_for_scheduler(args: argparse.Namespace, cfg, uow) -> bool:
    """While `pvar-loop run` holds the lease, record the command for it (carried out at its next tick) and
    say so; False when no scheduler runs (the command is done here, by hand)."""
    from loop.rounds.operator_commands import describe, queue_command
    from loop.rounds.scheduler import running_scheduler

    with uow() as session:
        holder = running_scheduler(session, cfg)
    if holder is None:
        return False
    arm = getattr(args, "arm", PRODUCTION_ARM)
    reason = getattr(args, "reason", None)
    command_id = queue_command(uow, args.round_command, args.number, arm=arm, reason=reason)
    print(
        f"scheduler {holder} is running: recorded {describe(args.round_command, args.number, reason)} as "
        f"operator command #{command_id}; the scheduler carries it out at its next tick (every "
        f"{cfg.scheduler.tick_seconds} s, after the step it may be running) and logs it; `pvar-loop status` "
        "shows it pending, then done"
    )
    return True


def rounds_with_next(cfg, uow, arm: str | None = PRODUCTION_ARM) -> list[dict]:
    """rounds_summary rows (of one arm, or all), each with `next`: the by-hand command of an open round and
    why it waits, computed now from the items (None for a closed round)."""
    from dataclasses import asdict

    from loop.rounds.state import next_step
    from storage.repositories import queries
    from storage.repositories.rounds import READY_FOR_ANNOTATORS, round_by_number

    with uow() as session:
        rows = [r for r in queries.rounds_summary(session) if arm is None or r["arm"] == arm]
        for r in rows:
            rnd = round_by_number(session, r["number"], r["arm"])
            nxt = next_step(session, cfg, rnd)
            r["next"] = asdict(nxt) if nxt else None
            ready = rnd.status in READY_FOR_ANNOTATORS and rnd.queue_links
            r["queue_links"] = dict(rnd.queue_links) if ready else None  # the priority link(s), while open
    return rows


def _numbers(r: dict) -> str:
    return (
        f"{r['items']} items, {r['answered']} answered, {r['decided']} decided, {r['ties']} ties, "
        f"{r['answers']} answers"
    )


# The units every view of a round uses, named once (issue 26): status, round status, pull, README, config help.
UNITS = (
    "items = prompts sent for labelling (the budget counts items); answers = one annotator's answer to one "
    "item (discards included); answered = items with their min_submitted answers; decided = items with an a/b "
    "majority; ties = items whose majority is tie"
)


def units_lines(rounds: list[dict]) -> list[str]:
    """The units, and the decision rule wherever a round needs two or more answers per item."""
    if not rounds:
        return []
    lines = [f"units: {UNITS}"]
    for m in sorted({r["min_submitted"] for r in rounds if (r.get("min_submitted") or 1) >= 2}):
        extra = "one discard" if m == 2 else f"{m - 1} discards"
        lines.append(
            f"rule: one vote plus {extra} decides an item under min_submitted = {m} (a discard counts as an "
            "answer but does not vote)"
        )
    return lines


def describe_next(nxt: dict) -> str:
    line = f"next: {nxt['command']} ({nxt['does']})"
    return line + (f"; waits: {nxt['waits']}" if nxt["waits"] else "")


def _next_line(cfg, uow, number: int) -> str:
    row = next(r for r in rounds_with_next(cfg, uow) if r["number"] == number)
    return describe_next(row["next"])[len("next: ") :] if row["next"] else "pvar-loop round start"


def _advance(args: argparse.Namespace, cfg, uow) -> int:
    """One step of round N, the scheduler's own (see loop.rounds.state.advance_round)."""
    from loop.rounds.state import Services, advance_round

    with holding_lease(cfg, uow):
        before, after = advance_round(uow, cfg, args.number, Services.default(), arm=args.arm)
    row = next(r for r in rounds_with_next(cfg, uow, args.arm) if r["number"] == args.number)
    moved = f"{before} -> {after}" if after != before else f"still {after}"
    print(f"round {args.number}: {moved}" + (f" ({row['reason']})" if row["reason"] else ""))
    print(describe_next(row["next"]) if row["next"] else "next: pvar-loop round start")
    for line in round_link_lines(row):
        print(line)
    return 0


def round_link_lines(r: dict) -> list[str]:
    """The priority link(s) of a rounds_with_next row while annotators can label the round; else nothing."""
    from annotation.links import link_lines

    return link_lines(r["number"], r["queue_links"]) if r.get("queue_links") else []


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(sub, "run", cmd_run, help="run the scheduler in the foreground (one per database)")
    s.add_argument("--wait", action="store_true", help="if another scheduler runs, wait and take over")
    s.add_argument("--once", action="store_true", help="one tick, then exit (cron-style use)")
    s.add_argument("--log-json", action="store_true", help="structured JSON logs, one object per line")

    for name, handler, what in (
        ("budget", cmd_budget, "items per round: prompts sent for labelling (0 pauses new rounds)"),
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
    p = sp.add_parser(
        "advance", help="do the open round's next step by hand (exactly what the scheduler would do next)"
    )
    p.add_argument("number", type=int)
    p.add_argument(
        "--arm", default=PRODUCTION_ARM, help=f"experiment arm of the round (default: {PRODUCTION_ARM})"
    )
    p = sp.add_parser(
        "cancel",
        help="cancel an open round: its waiting records leave Argilla, its prompts become selectable again",
    )
    p.add_argument("number", type=int)
    p.add_argument("--reason", default="cancelled by operator")
    p = sp.add_parser("status", help="list rounds, the next by-hand command and why an open one waits")
    p.add_argument("--json", action="store_true")
