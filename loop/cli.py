"""`pvar-loop` command line. Thin handlers: load config -> open a unit of work -> call a plain function.

Heavy libraries (torch, transformers, trl) are imported inside the handlers that need them: `--help` is fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("pvar_loop")

HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


def handler(name: str):
    def register(fn: Callable[[argparse.Namespace], int]):
        HANDLERS[name] = fn
        return fn

    return register


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


def _config(args: argparse.Namespace):
    from loop.config import load_config

    return load_config(Path(args.config) if args.config else None)


def _engine(cfg, *, check_head: bool = True):
    from storage.db import make_engine
    from storage.migrate import ensure_at_head

    engine = make_engine(cfg.database_url)
    if check_head:
        ensure_at_head(engine)
    return engine


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


@handler("init")
def cmd_init(args: argparse.Namespace) -> int:
    from loop.config import CONFIG_FILENAME, default_config_toml
    from storage.migrate import upgrade

    target = Path(args.config or CONFIG_FILENAME)
    if target.exists() and not args.force:
        print(f"{target} exists; keeping it (use --force to overwrite)")
    else:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(default_config_toml(), encoding="utf-8")
        tmp.replace(target)
        print(f"wrote {target}")
    cfg = _config(argparse.Namespace(config=str(target)))
    cfg.paths.data_dir.mkdir(parents=True, exist_ok=True)
    engine = _engine(cfg, check_head=False)
    upgrade(engine)
    print(f"database ready: {engine.url.render_as_string(hide_password=True)}")
    return 0


@handler("db")
def cmd_db(args: argparse.Namespace) -> int:
    from storage import migrate

    engine = _engine(_config(args), check_head=False)
    if args.db_command == "upgrade":
        migrate.upgrade(engine, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(engine, args.revision)
    current = migrate.current_revision(engine)
    print(f"current revision: {current or '(empty database)'}; head: {migrate.head_revision()}")
    return 0


@handler("ingest")
def cmd_ingest(args: argparse.Namespace) -> int:
    from loop.ingest import ingest_file, write_reject_report
    from storage.db import UnitOfWork

    cfg = _config(args)
    uow = UnitOfWork(_engine(cfg))
    with uow() as session:
        report = ingest_file(
            session,
            Path(args.file),
            split=args.split,
            max_chars=cfg.pool.max_prompt_chars,
            skip_invalid=args.skip_invalid,
        )
    write_reject_report(report, cfg.paths.data_dir / "rejects")
    print(report.summary())
    return 0


@handler("status")
def cmd_status(args: argparse.Namespace) -> int:
    from storage import queries
    from storage.db import UnitOfWork

    cfg = _config(args)
    with UnitOfWork(_engine(cfg))() as session:
        status = {
            "database": _engine_url(cfg),
            "pool": queries.pool_summary(session),
            "rounds": queries.rounds_summary(session),
            "labels": queries.label_count(session),
            "evaluations": queries.evaluations_summary(session),
            "operator_actions": queries.recent_actions(session),
        }
    if args.json:
        _print_json(status)
        return 0
    pool = status["pool"]
    print(f"database: {status['database']}")
    print(
        f"pool: {pool['prompts'] or 'empty'}; train scored {pool['train_scored']}, "
        f"unscored {pool['train_unscored']}"
    )
    print(f"labels collected: {status['labels']}")
    for r in status["rounds"]:
        why = f" ({r['reason']})" if r["reason"] else ""
        print(
            f"round {r['arm']}/{r['number']}: {r['status']}{why}; {r['strategy']} budget {r['budget']}, "
            f"{r['items']} items, {r['labels']} labels"
        )
    for e in status["evaluations"]:
        print(
            f"eval {e['checkpoint']} vs {e['reference']}: win rate {e['win_rate']:.3f} "
            f"[{e['ci'][0]:.3f}, {e['ci'][1]:.3f}] n={e['n']} ({e['judge']})"
        )
    for a in status["operator_actions"]:
        print(f"action {a['at']} {a['actor']}: {a['action']} {a['payload']}")
    return 0


def _engine_url(cfg) -> str:
    from sqlalchemy.engine import make_url

    return make_url(cfg.database_url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pvar-loop",
        description="Active-learning preference annotation: label only high preference-variance prompts.",
    )
    p.add_argument("--config", help="TOML config file (default: ./pvar-loop.toml if present, else defaults)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", help="write a commented default config and create/migrate the database")
    s.add_argument("--force", action="store_true", help="overwrite an existing config file")

    s = sub.add_parser("db", help="database migrations")
    dbs = s.add_subparsers(dest="db_command", required=True)
    dbs.add_parser("upgrade", help="migrate to a revision (default head)").add_argument(
        "revision", nargs="?", default="head"
    )
    dbs.add_parser("downgrade", help="migrate down to a revision ('base' empties it)").add_argument(
        "revision"
    )
    dbs.add_parser("current", help="show the current and head revisions")

    s = sub.add_parser("ingest", help="add prompts from JSONL, CSV, Parquet or a saved datasets directory")
    s.add_argument("file")
    s.add_argument("--split", choices=["train", "eval"], default="train")
    s.add_argument("--skip-invalid", action="store_true", help="write valid rows, report the rest")

    s = sub.add_parser("status", help="pool, rounds, labels and evaluations")
    s.add_argument("--json", action="store_true")

    for extend in _EXTENSIONS:
        extend(sub)
    return p


# Feature modules add their sub-commands here (kept out of this file so it stays a table of contents).
_EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []


def _load_extensions() -> None:
    import importlib

    if _EXTENSIONS:
        return
    for name in (
        "loop.cli_scoring",
        "loop.cli_annotation",
        "loop.cli_training",
        "loop.cli_rounds",
        "loop.cli_report",
        "loop.cli_demo",
        "loop.cli_reward_model",
        "loop.cli_experiment",
    ):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        _EXTENSIONS.append(module.add_commands)
        HANDLERS.update(module.HANDLERS)


def main(argv: list[str] | None = None) -> int:
    _load_extensions()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Libraries that log every request or migration step at INFO: only their warnings unless --verbose.
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from loop.config import ConfigError
    from storage.migrate import DatabaseNotAtHead

    try:
        return HANDLERS[args.command](args)
    except (UserError, ConfigError, DatabaseNotAtHead) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        # Domain validation errors (IngestError, bad budgets...) carry their own file/key context.
        if type(e).__module__.startswith(("loop", "storage", "annotation")):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    # Import by name: run as __main__ this file is a second copy of loop.cli, whose UserError differs.
    from loop.cli import main as _main

    sys.exit(_main())
