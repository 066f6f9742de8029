"""Engine and unit of work. Sessions are opened at the command/job boundary and never inside data code."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the scheduler write while `status` reads; busy_timeout makes writers queue instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


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
    distinct = list(dict.fromkeys(values))
    rows: list[Any] = []
    for start in range(0, len(distinct), chunk):
        rows.extend(session.execute(build(distinct[start : start + chunk])).all())
    return rows
