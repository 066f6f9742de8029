"""What a schema downgrade would destroy, found by running it where it cannot hurt, and the SQLite backup written
before one that destroys something.

The migrations' downgrades drop tables and columns (and may delete rows); rather than keep a second list of
what each revision drops, the downgrade runs for real on a throwaway copy (SQLite) or inside a transaction that
is rolled back (PostgreSQL, whose DDL is transactional), and the rows and values before and after are compared.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, func, inspect, select, table
from sqlalchemy.sql import column

from storage.db import make_engine, translate_errors
from storage.migrate import MigrationError, current_revision, downgrade, downgrade_within, refuse_newer
from storage.private import create_private

# project_secrets: drawn by 0015's upgrade, a key for ids not yet made; stored ids keep theirs without it
NOT_DATA = {"alembic_version", "project_secrets"}

# table -> (rows, {column: non-NULL values})
Snapshot = dict[str, tuple[int, dict[str, int]]]


@dataclass(frozen=True)
class DataLoss:
    """What a downgrade destroys: whole tables (rows), columns (non-NULL values) and rows deleted from tables
    that survive. Empty when the downgrade only drops empty tables and columns."""

    tables: dict[str, int] = field(default_factory=dict)
    columns: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.tables.values()) or any(self.columns.values()) or any(self.rows.values())

    def describe(self) -> str:
        parts = [f"table {t} ({n} rows)" for t, n in self.tables.items() if n]
        parts += [f"column {c} ({n} values)" for c, n in self.columns.items() if n]
        parts += [f"{n} rows of {t}" for t, n in self.rows.items() if n]
        return ", ".join(parts) or "nothing"


def _snapshot(conn: Connection) -> Snapshot:
    out: Snapshot = {}
    insp = inspect(conn)
    for name in sorted(set(insp.get_table_names()) - NOT_DATA):
        names = [c["name"] for c in insp.get_columns(name)]
        t = table(name, *(column(n) for n in names))
        counts = conn.execute(select(func.count(), *(func.count(t.c[n]) for n in names))).one()
        out[name] = (counts[0], dict(zip(names, counts[1:], strict=True)))
    return out


def _loss(before: Snapshot, after: Snapshot) -> DataLoss:
    loss = DataLoss()
    for name, (rows, values) in before.items():
        if name not in after:
            loss.tables[name] = rows
            continue
        rows_after, values_after = after[name]
        if rows_after < rows:
            loss.rows[name] = rows - rows_after
        for col, n in values.items():
            if col not in values_after:
                loss.columns[f"{name}.{col}"] = n
    return loss


def downgrade_loss(engine: Engine, revision: str) -> DataLoss:
    """What `downgrade(engine, revision)` would destroy; the database is left as it is."""
    refuse_newer(engine)
    with translate_errors(engine), engine.connect() as conn:
        before = _snapshot(conn)
    if engine.dialect.name == "sqlite":
        return _loss(before, _sqlite_dry_run(engine, revision))
    with translate_errors(engine), engine.connect() as conn:
        trans = conn.begin()
        try:
            downgrade_within(conn, revision)
            after = _snapshot(conn)
        finally:
            trans.rollback()
    return _loss(before, after)


def _sqlite_dry_run(engine: Engine, revision: str) -> Snapshot:
    src = Path(engine.url.database)
    with tempfile.TemporaryDirectory(prefix=".downgrade-", dir=src.parent) as tmp:
        copy = Path(tmp) / src.name
        _copy_sqlite(src, copy)
        scratch = make_engine(f"sqlite:///{copy}")
        try:
            try:
                downgrade(scratch, revision)
            except MigrationError as e:  # name the database, not its copy
                raise MigrationError(str(e).replace(str(copy), str(src))) from e
            with scratch.connect() as conn:
                return _snapshot(conn)
        finally:
            scratch.dispose()


def _copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (its WAL included), mode 600 like the original."""
    create_private(dst)
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def backup_sqlite(engine: Engine) -> Path:
    """Copy the SQLite database next to itself, named after its revision and the time: <db>.<rev>-<UTC>.bak."""
    src = Path(engine.url.database)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dst = src.with_name(f"{src.name}.{current_revision(engine) or 'base'}-{stamp}.bak")
    _copy_sqlite(src, dst)
    return dst
