"""`pvar-loop demo`: the README's main command."""

from __future__ import annotations

import argparse
from pathlib import Path

from loop.cli import UserError, positive_int


def cmd_demo(args: argparse.Namespace) -> int:
    from loop.demo import FULL, QUICK, DemoError, run_demo
    from loop.seed_reward_model import SeedPoolError
    from loop.tiny_models import OfflineModelError

    try:
        run_demo(
            Path(args.data_dir),
            profile=QUICK if args.quick else FULL,
            rounds=args.rounds,
            keep_argilla=args.keep_argilla,
            timeout_s=args.timeout,
            model_cache=Path(args.model_cache),
        )
    except (DemoError, SeedPoolError, OfflineModelError) as e:
        raise UserError(str(e)) from None
    return 0


HANDLERS = {"demo": cmd_demo}


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "demo", help="run the whole loop offline: Argilla, bot annotator, scheduler, DPO, report"
    )
    s.add_argument(
        "--quick",
        action="store_true",
        help="tiny random models: the mechanics in a few minutes (default: SmolLM2 + a learned selection RM)",
    )
    s.add_argument("--rounds", type=positive_int, default=2, help="rounds to run (default 2)")
    s.add_argument(
        "--data-dir", default="data/demo", help="a fresh directory for this run (default data/demo)"
    )
    s.add_argument("--keep-argilla", action="store_true", help="leave the Argilla UI running afterwards")
    s.add_argument(
        "--model-cache",
        default="data/models",
        help="where SmolLM2 and MiniLM are converted once and kept across demo runs (default data/models)",
    )
    s.add_argument(
        "--timeout", type=float, default=1800, help="give up waiting for the rounds after this many seconds"
    )
