"""`pvar-loop demo`: the README's main command."""

from __future__ import annotations

import argparse
from pathlib import Path

from loop.cli import UserError


def cmd_demo(args: argparse.Namespace) -> int:
    from loop.demo import DemoError, run_demo

    if not args.quick:
        print("[demo] only the --quick profile (tiny models) exists so far; running it")
    try:
        run_demo(
            Path(args.data_dir), rounds=args.rounds, keep_argilla=args.keep_argilla, timeout_s=args.timeout
        )
    except DemoError as e:
        raise UserError(str(e)) from None
    return 0


HANDLERS = {"demo": cmd_demo}


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "demo", help="run the whole loop offline: Argilla, bot annotator, scheduler, DPO, report"
    )
    s.add_argument("--quick", action="store_true", help="tiny models: the mechanics in a few minutes")
    s.add_argument("--rounds", type=int, default=2, help="rounds to run (default 2)")
    s.add_argument(
        "--data-dir", default="data/demo", help="a fresh directory for this run (default data/demo)"
    )
    s.add_argument("--keep-argilla", action="store_true", help="leave the Argilla UI running afterwards")
    s.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
