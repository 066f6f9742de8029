"""Exactly one scheduler per database, on SQLite and PostgreSQL; a dead holder is taken over."""

from __future__ import annotations

import time

import pytest

from storage.db import make_engine
from storage.locks import LockHeld, acquire, holder_of, release, renew
from storage.migrate import upgrade


def _lock_cycle(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    acquire(engine, "scheduler", "first", stale_after=0.5)
    with pytest.raises(LockHeld, match="already running on this database: first"):
        acquire(engine, "scheduler", "second", stale_after=0.5)
    assert renew(engine, "scheduler", "first")
    time.sleep(0.7)  # first stops renewing: presumed dead
    acquire(engine, "scheduler", "second", stale_after=0.5)
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
