"""Exactly one scheduler per database, on SQLite and PostgreSQL; a dead holder is taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.db import make_engine
from storage.locks import LockHeld, acquire, holder_of, release, renew
from storage.migrate import upgrade


class FakeClock:
    """Time that moves only when the test says so: no sleeping against a timeout."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _lock_cycle(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    clock = FakeClock()
    acquire(engine, "scheduler", "first", stale_after=30, clock=clock)
    clock.advance(29)
    with pytest.raises(LockHeld, match="already running on this database: first"):
        acquire(engine, "scheduler", "second", stale_after=30, clock=clock)
    assert renew(engine, "scheduler", "first", clock=clock)
    clock.advance(29)  # within stale_after of the renewal: still alive
    with pytest.raises(LockHeld):
        acquire(engine, "scheduler", "second", stale_after=30, clock=clock)
    clock.advance(2)  # first stopped renewing 31 s ago: presumed dead
    acquire(engine, "scheduler", "second", stale_after=30, clock=clock)
    assert holder_of(engine, "scheduler") == "second"
    assert not renew(engine, "scheduler", "first")  # the old holder learns it lost the lease
    release(engine, "scheduler", "first")  # a stale release does not free someone else's lease
    assert holder_of(engine, "scheduler") == "second"
    release(engine, "scheduler", "second")
    assert holder_of(engine, "scheduler") is None
    engine.dispose()


def test_lock_sqlite(sqlite_url):
    _lock_cycle(sqlite_url)


@pytest.mark.postgres
def test_lock_postgres(postgres_url):
    _lock_cycle(postgres_url)
