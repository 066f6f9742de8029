"""Exactly one scheduler per database, on SQLite and PostgreSQL; a dead holder is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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


def _dead_pid() -> int:
    """The PID of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("role", ["", "by-hand:"])
def test_lease_of_a_dead_process_of_this_host_is_taken_at_once(sqlite_url, role):
    """A scheduler or by-hand command killed on this host frees the lease for the next one without waiting
    out stale_after (the by-hand holder "by-hand:host:pid:..." was read with host "by-hand" and waited)."""
    engine = make_engine(sqlite_url)
    upgrade(engine)
    clock = FakeClock()
    dead = f"{role}{socket.gethostname()}:{_dead_pid()}:0123abcd"
    acquire(engine, "scheduler", dead, stale_after=300, clock=clock)
    clock.advance(1)
    acquire(engine, "scheduler", "next", stale_after=300, clock=clock)
    assert holder_of(engine, "scheduler") == "next"
    alive = f"{role}{socket.gethostname()}:{os.getpid()}:0123abcd"  # this test's own process: alive
    release(engine, "scheduler", "next")
    acquire(engine, "scheduler", alive, stale_after=300, clock=clock)
    with pytest.raises(LockHeld):
        acquire(engine, "scheduler", "next", stale_after=300, clock=clock)
    engine.dispose()
