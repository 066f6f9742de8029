"""Engine and unit of work. Sessions are opened at the command/job boundary and never inside data code."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import PvarLoopError
from storage.private import create_private

# backend -> the drivers we install ("" is the backend's default name; postgresql:// means psycopg 3).
SUPPORTED_DRIVERS = {"sqlite": ("", "pysqlite"), "postgresql": ("", "psycopg")}
URL_FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"


class DatabaseUnusable(PvarLoopError, RuntimeError):
    """The configured database cannot be used: malformed URL, unsupported driver, unreachable server, a corrupt or
    read-only SQLite file. The message names the database (password hidden) and keeps the driver's reason."""


def redact(url: str) -> str:
    """`url` with any password replaced by ***, for messages (works on strings that do not parse)."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the scheduler write while `status` reads; busy_timeout makes writers queue instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for a SQLite or PostgreSQL (psycopg 3) URL; anything else is a DatabaseUnusable naming it."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise DatabaseUnusable(
            f"malformed database URL {redact(url)!r} ({e}); expected {URL_FORMS}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if driver not in SUPPORTED_DRIVERS.get(backend, ()):
        raise DatabaseUnusable(
            f"unsupported database driver {parsed.drivername!r} in {redact(url)!r}; pvar-loop supports {URL_FORMS}"
        )
    try:
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                _make_parent(Path(parsed.database))
                _create_private(Path(parsed.database))
            engine = create_engine(url)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        if parsed.drivername == "postgresql":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise DatabaseUnusable(f"cannot use database URL {redact(url)!r}: {e}") from e


def _make_parent(db: Path) -> None:
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatabaseUnusable(
            f"cannot create the directory {db.parent} of SQLite database {db}: {e.strerror or e}"
        ) from e


def _create_private(db: Path) -> None:
    try:
        create_private(db)
    except OSError as e:
        raise DatabaseUnusable(f"cannot create SQLite database {db}: {e.strerror or e}") from e


def check_connection(engine: Engine) -> None:
    """Connect once, so an unreachable server or a corrupt or read-only SQLite file is one clear error here
    rather than a traceback from the first query."""
    with translate_errors(engine, connecting=True), engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()


@contextmanager
def translate_errors(engine: Engine, *, connecting: bool = False) -> Iterator[None]:
    """Driver errors that mean "this database cannot be used" become DatabaseUnusable; others pass through.
    `connecting`: every driver error here comes from reaching the database at all."""
    try:
        yield
    except DBAPIError as e:
        unusable = _unusable(engine, e, connecting)
        if unusable is None:
            raise
        raise unusable from e


def _unusable(engine: Engine, e: DBAPIError, connecting: bool) -> DatabaseUnusable | None:
    reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        lowered = reason.lower()
        if "not a database" in lowered or "malformed" in lowered:
            return DatabaseUnusable(
                f"SQLite file {path} is corrupt or not a SQLite database ({reason}); "
                "restore it from a backup or move it away"
            )
        if "readonly" in lowered or "read-only" in lowered:
            return DatabaseUnusable(
                f"SQLite database {path} is read-only ({reason}): pvar-loop writes the file and, for its WAL "
                f"journal, its directory {Path(path).parent}"
            )
        if "unable to open" in lowered:
            return DatabaseUnusable(
                f"cannot open SQLite database {path} ({reason}): its directory must exist and be writable"
            )
    if connecting:
        where = engine.url.render_as_string(hide_password=True)
        return DatabaseUnusable(f"cannot connect to database {where}: {reason}")
    return None


class UnitOfWork:
    """One transaction per command or job: commits on success, rolls back on any error.

    `fence`, when given, runs inside the transaction just before each commit and raises to refuse it: the
    scheduler passes a check that it still holds its lease (storage.locks.lease_fence), so a process that lost
    the lease records nothing more."""

    def __init__(self, engine: Engine, fence: Callable[[Session], None] | None = None) -> None:
        self.engine = engine
        self.fence = fence
        self._factory = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def __call__(self) -> Iterator[Session]:
        session = self._factory()
        try:
            yield session
            if self.fence is not None:
                session.flush()  # this transaction's writes take their locks before the lease is checked
                self.fence(session)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


# Bound parameters per IN (...) list; far below SQLite's limit (32766, or 999 on old builds).
IN_CHUNK = 500
T = TypeVar("T")


def select_in(
    session: Session, build: Callable[[list[T]], Select], values: Iterable[T], chunk: int = IN_CHUNK
) -> list[Any]:
    """Rows of build(chunk_of_values) over `values` split into chunks: THE place big IN lists are cut up."""
    rows: list[Any] = []
    for part in in_chunks(values, chunk):
        rows.extend(session.execute(build(part)).all())
    return rows


def in_chunks(values: Iterable[T], chunk: int = IN_CHUNK) -> Iterator[list[T]]:
    """The distinct values, in order, cut into IN lists of at most `chunk` (for selects and deletes alike)."""
    distinct = list(dict.fromkeys(values))
    for start in range(0, len(distinct), chunk):
        yield distinct[start : start + chunk]
