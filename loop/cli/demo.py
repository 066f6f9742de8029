"""`pvar-loop demo`: the README's main command."""

from __future__ import annotations

import argparse
from pathlib import Path

from loop.cli.common import add_command, positive_int
from loop.ml.generation import BACKENDS


def cmd_demo(args: argparse.Namespace) -> int:
    from loop.demo.run import FULL, QUICK, run_demo

    run_demo(
        Path(args.data_dir),
        profile=QUICK if args.quick else FULL,
        rounds=args.rounds,
        keep_argilla=args.keep_argilla,
        timeout_s=args.timeout,
        model_cache=Path(args.model_cache),
        backend=args.backend,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(
        sub,
        "demo",
        cmd_demo,
        help="run the whole loop offline: Argilla, bot annotator, scheduler, DPO, report",
    )
    s.add_argument(
        "--quick",
        action="store_true",
        help="tiny random models: the mechanics in a few minutes (default: SmolLM2 + a learned selection RM)",
    )
    s.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="[generation] backend of the demo's project (default auto: vLLM for SmolLM2 where installed, "
        "transformers for the quick profile's tiny models)",
    )
    s.add_argument("--rounds", type=positive_int, default=2, help="rounds to run (default 2)")
    s.add_argument(
        "--data-dir", default="data/demo", help="a fresh directory for this run (default data/demo)"
    )
    s.add_argument("--keep-argilla", action="store_true", help="leave the Argilla UI running afterwards")
    s.add_argument(
        "--model-cache",
        default="data/models",
        help="where the demo's models are kept across demo runs (outside --data-dir, which each demo empties): "
        "the quick profile's tiny models; SmolLM2, MiniLM and the learned selection reward model "
        "(default data/models)",
    )
    s.add_argument(
        "--timeout", type=float, default=1800, help="give up waiting for the rounds after this many seconds"
    )
