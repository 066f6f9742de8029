"""`pvar-loop` command line: the parser is the table of contents; each command group lives in its own module.

Handlers are thin (load config -> open a unit of work -> call a plain function) and import heavy libraries
(torch, transformers, trl) inside themselves, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from loop.cli import (
    annotation,
    annotators,
    demo,
    experiment,
    gold,
    project,
    report,
    reward_model,
    rounds,
    scoring,
    sweep,
    training,
)
from storage.errors import PvarLoopError

# Order of the groups in `--help`.
COMMAND_MODULES = (
    project,
    scoring,
    annotation,
    annotators,
    gold,
    training,
    rounds,
    report,
    demo,
    reward_model,
    experiment,
    sweep,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pvar-loop",
        description="Active-learning preference annotation: label only high preference-variance prompts.",
    )
    p.add_argument("--config", help="TOML config file (default: ./pvar-loop.toml if present, else defaults)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


# Every module logs to logging.getLogger(__name__), so these three loggers hold all of our output.
PACKAGE_LOGGERS = ("loop", "annotation", "storage")

# Set before the libraries are imported (they read them at import): no "Loading weights", "Tokenizing train
# dataset" or "Writing model shards" bars unless --verbose. Our own progress (loop.progress) is not affected.
# TQDM_DISABLE: bars libraries draw with tqdm directly (TRL's "Computing reference log probs").
QUIET_LIBRARY_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}


class DemoteToDebug(logging.Filter):
    """Library output that reaches a logger as a warning (Python warnings such as a FutureWarning, through
    logging.captureWarnings) is DEBUG for an operator: shown only when that logger is enabled for DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def configure_logging(verbose: bool) -> None:
    """Our packages at INFO (DEBUG with --verbose); every library only its warnings and errors, its progress
    bars and Python warnings at DEBUG: one line per step at INFO."""
    for name in PACKAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The root level is what every library logger without a level of its own inherits (the Argilla SDK's
    # "UsersAPI: Got user", transformers, datasets, ...): their INFO lines only with --verbose.
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Libraries that log every request, migration step or job run at INFO: only their warnings unless --verbose
    # (APScheduler logs three lines per job run: about 125 lines a minute at the demo's 2 s tick).
    for noisy in ("alembic", "httpx", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.captureWarnings(True)
    warnings_log = logging.getLogger("py.warnings")
    if not any(isinstance(f, DemoteToDebug) for f in warnings_log.filters):
        warnings_log.addFilter(DemoteToDebug())
    if not verbose:
        for key, value in QUIET_LIBRARY_ENV.items():
            os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.handler(args)
    except PvarLoopError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
