"""`pvar-loop report`: sub-command registered by loop.cli._load_extensions."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from loop.cli import _config, _engine

HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}


def add_commands(sub: argparse._SubParsersAction) -> None:
    if "report" in sub.choices:  # loop.cli registers extensions again on every main() call
        return
    s = sub.add_parser(
        "report",
        help="write an HTML page with plots (PVar per round, eval vs labels per arm, agreement, budget)",
    )
    s.add_argument("--out", metavar="DIR", help="output directory (default: <data_dir>/report)")


def cmd_report(args: argparse.Namespace) -> int:
    from loop.report import build_report
    from storage.db import UnitOfWork

    cfg = _config(args)
    out = Path(args.out) if args.out else cfg.paths.data_dir / "report"
    with UnitOfWork(_engine(cfg))() as session:
        files = build_report(session, out)
    print(files.index.resolve())
    return 0


HANDLERS["report"] = cmd_report
