"""Helpers every command module shares: the error type, argparse types, config/engine loading, JSON output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def open_engine(cfg, *, check_head: bool = True, create: bool = False):
    """The configured database, connected once (a bad URL, an unreachable server, a corrupt or read-only file is
    an error naming the config key); refuses one whose schema is not at the Alembic head unless told not to.

    Only `create` (init, db upgrade) may bring a SQLite file into being: any other command, above all the
    read-only ones (status, report), says there is none and how to create it, and leaves no empty file."""
    from storage.db import DatabaseUnusable, check_connection, make_engine
    from storage.migrate import ensure_at_head

    if not create:
        _refuse_missing_sqlite(cfg.database_url)
    try:
        engine = make_engine(cfg.database_url)
        check_connection(engine)
    except DatabaseUnusable as e:
        key = "[database] url" if cfg.database.url else "[paths] data_dir"
        raise DatabaseUnusable(f"{key}: {e}") from e
    if check_head:
        ensure_at_head(engine)
    return engine


def _refuse_missing_sqlite(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return  # make_engine names the malformed URL
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    if not Path(parsed.database).exists():
        raise UserError(
            f"no database at {parsed.database}; create it with `pvar-loop init` (or `pvar-loop db upgrade`)"
        )


def open_uow(args: argparse.Namespace):
    """(config, unit of work) for a command that reads and writes the project database."""
    from storage.db import UnitOfWork

    cfg = config_from(args)
    return cfg, UnitOfWork(open_engine(cfg))


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


@contextmanager
def holding_lease(cfg, uow=None) -> Iterator[None]:
    """The scheduler lease while a by-hand command moves a round (one driver per database; `uow`'s commits are
    fenced by it meanwhile); a running scheduler is named in a one-line error."""
    from loop.rounds.scheduler import by_hand
    from storage.locks import LockHeld

    try:
        with by_hand(cfg, uow):
            yield
    except LockHeld as e:
        raise UserError(f"{e}; it moves the rounds by itself: stop it to work by hand") from None


def annotator_links(cfg, client) -> list[str]:
    """Where annotators start (`argilla up`, `annotators add`): the open round's priority link(s) while it is
    ready for them, else the dataset sorted by priority, else nothing (no dataset before the first push)."""
    from annotation.dataset import open_dataset
    from annotation.links import link_lines
    from storage.db import UnitOfWork
    from storage.repositories.rounds import links_ready

    try:
        with UnitOfWork(open_engine(cfg))() as session:
            ready = links_ready(session)
    except PvarLoopError:  # no project database yet: Argilla alone can still say where to go
        ready = None
    if ready is not None:
        return link_lines(*ready)
    try:
        dataset = open_dataset(client, cfg.argilla.dataset, cfg.argilla.workspace)
    except PvarLoopError:  # what went wrong with the dataset is for push/pull to say, not for this hint
        return []
    if dataset is None:
        return []
    return [f"annotate at {dataset.annotation_url}  (every round, in priority order; no round is open now)"]


def print_annotator_links(cfg, client=None) -> bool:
    """Print annotator_links (the configured Argilla's client unless given); False when there is none, or
    when Argilla cannot say: the command succeeded, and a hint that cannot be had is no reason to fail it."""
    from loop.argilla_client import connect_client

    try:
        lines = annotator_links(cfg, client if client is not None else connect_client(cfg))
    except PvarLoopError:
        return False
    for line in lines:
        print(line)
    return bool(lines)
