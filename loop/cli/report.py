"""`pvar-loop report`: write the HTML report (plots and report.json) built from the database."""

from __future__ import annotations

import argparse
from pathlib import Path

from loop.cli.common import add_command, config_from, open_engine


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(
        sub,
        "report",
        cmd_report,
        help="write an HTML page with plots (PVar per round, eval vs answers per arm, agreement, budget)",
    )
    s.add_argument("--out", metavar="DIR", help="output directory (default: <data_dir>/report)")


def cmd_report(args: argparse.Namespace) -> int:
    from loop.report.build import build_report
    from storage.db import UnitOfWork

    cfg = config_from(args)
    out = Path(args.out) if args.out else cfg.paths.data_dir / "report"
    with UnitOfWork(open_engine(cfg))() as session:
        files = build_report(session, out, cfg.quality)
    print(files.index.resolve())
    return 0
