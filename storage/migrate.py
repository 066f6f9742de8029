"""Migrations run in code (`pvar-loop db ...`), and the guard that refuses a database not at head."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine

from storage.db import translate_errors
from storage.errors import PvarLoopError

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT_LOCATION = REPO_ROOT / "alembic"


class DatabaseNotAtHead(PvarLoopError, RuntimeError):
    """The database schema is older (or newer) than this code expects."""


class MigrationError(PvarLoopError, RuntimeError):
    """Alembic refused a migration (e.g. an unknown target revision); the message keeps its reason."""


def _config(engine: Engine):
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["url"] = engine.url.render_as_string(hide_password=False)
    return cfg


def _with_connection(engine: Engine, revision: str, fn) -> None:
    refuse_newer(engine)
    with translate_errors(engine), engine.begin() as conn:
        _on_connection(conn, revision, fn)


def _on_connection(conn: Connection, revision: str, fn) -> None:
    from alembic.util import CommandError

    cfg = _config(conn.engine)
    cfg.attributes["connection"] = conn
    try:
        fn(cfg)
    except CommandError as e:
        where = conn.engine.url.render_as_string(hide_password=True)
        raise MigrationError(f"cannot migrate database {where} to revision {revision!r}: {e}") from e


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    _with_connection(engine, revision, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _with_connection(engine, revision, lambda cfg: command.downgrade(cfg, revision))


def downgrade_within(conn: Connection, revision: str) -> None:
    """Downgrade inside the caller's open transaction (a dry run rolls it back; PostgreSQL's DDL is
    transactional)."""
    from alembic import command

    refuse_newer(conn.engine)
    _on_connection(conn, revision, lambda cfg: command.downgrade(cfg, revision))


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config_for_scripts()).get_current_head()


def known_revisions() -> set[str]:
    """Every revision this code has a migration for."""
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_config_for_scripts()).walk_revisions()}


def is_newer(revision: str | None) -> bool:
    """A revision this code does not know: written by a newer pvar-loop (revisions are never deleted)."""
    return revision is not None and revision not in known_revisions()


def _config_for_scripts():
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with translate_errors(engine), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _newer_message(engine: Engine, current: str) -> str:
    where = engine.url.render_as_string(hide_password=True)
    head = head_revision()
    return (
        f"database {where} is at revision {current}, which is newer than this pvar-loop (its newest is "
        f"{head}): it was migrated by a newer pvar-loop; use that version, or its `pvar-loop db downgrade "
        f"{head}` to come back to this one"
    )


def refuse_newer(engine: Engine) -> None:
    """Raise when the database was migrated by a newer pvar-loop (no migration here can touch it)."""
    current = current_revision(engine)
    if is_newer(current):
        raise DatabaseNotAtHead(_newer_message(engine, current))


def ensure_at_head(engine: Engine) -> None:
    """Raise with the fix when the schema is not the one this code was written for."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise DatabaseNotAtHead(
            f"database {where} has no pvar-loop schema; run `pvar-loop init` or `pvar-loop db upgrade`"
        )
    if is_newer(current):
        raise DatabaseNotAtHead(_newer_message(engine, current))
    raise DatabaseNotAtHead(
        f"database {where} is at revision {current}, this version of pvar-loop needs {head}; "
        "run `pvar-loop db upgrade` (back up PostgreSQL first)"
    )
