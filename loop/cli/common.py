"""Helpers every command module shares: the error type, argparse types, config/engine loading, JSON output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from storage.errors import PvarLoopError

Handler = Callable[[argparse.Namespace], int]


class UserError(PvarLoopError):
    """A command-line problem the user can fix; printed without a traceback."""


def add_command(
    sub: argparse._SubParsersAction, name: str, handler: Handler, **kwargs
) -> argparse.ArgumentParser:
    """A sub-command whose parsed arguments carry the handler that runs it."""
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(handler=handler)
    return parser


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type for whole numbers >= minimum, with a message naming the bad value."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def config_from(args: argparse.Namespace):
    """The validated config named by --config (else ./pvar-loop.toml, else defaults)."""
    from loop.config import load_config

    return load_config(Path(args.config) if args.config else None)


def open_engine(cfg, *, check_head: bool = True):
    """The configured database, connected once (a bad URL, an unreachable server, a corrupt or read-only file is
    an error naming the config key); refuses one whose schema is not at the Alembic head unless told not to."""
    from storage.db import DatabaseUnusable, check_connection, make_engine
    from storage.migrate import ensure_at_head

    try:
        engine = make_engine(cfg.database_url)
        check_connection(engine)
    except DatabaseUnusable as e:
        key = "[database] url" if cfg.database.url else "[paths] data_dir"
        raise DatabaseUnusable(f"{key}: {e}") from e
    if check_head:
        ensure_at_head(engine)
    return engine


def open_uow(args: argparse.Namespace):
    """(config, unit of work) for a command that reads and writes the project database."""
    from storage.db import UnitOfWork

    cfg = config_from(args)
    return cfg, UnitOfWork(open_engine(cfg))


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))
