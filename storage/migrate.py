"""Migrations run in code (`pvar-loop db ...`), and the guard that refuses a database not at head."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from storage.errors import PvarLoopError

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT_LOCATION = REPO_ROOT / "alembic"


class DatabaseNotAtHead(PvarLoopError, RuntimeError):
    """The database schema is older (or newer) than this code expects."""


def _config(engine: Engine):
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.attributes["url"] = engine.url.render_as_string(hide_password=False)
    return cfg


def _with_connection(engine: Engine, fn) -> None:
    cfg = _config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        fn(cfg)


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    _with_connection(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _with_connection(engine, lambda cfg: command.downgrade(cfg, revision))


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config_for_scripts()).get_current_head()


def _config_for_scripts():
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


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
    raise DatabaseNotAtHead(
        f"database {where} is at revision {current}, this version of pvar-loop needs {head}; "
        "run `pvar-loop db upgrade` (back up PostgreSQL first)"
    )
