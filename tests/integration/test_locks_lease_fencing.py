"""Issue 11 points 9 and 10: one scheduler means one scheduler.

A scheduler whose lease was taken over must not record anything afterwards: every commit of its unit of work
checks, inside the same transaction, that it still holds the lease (the holder id is the fencing token), so a
job that lost the lease stops at its next commit with nothing written. A holder whose process is dead on this
host is taken over at once. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from loop.config import parse_config
from loop.rounds.state import Services, tick
from storage.db import UnitOfWork, make_engine
from storage.locks import LeaseLost, LockHeld, acquire, holder_of, lease_fence
from storage.migrate import upgrade
from storage.models import OperatorAction, Round
from storage.statuses import PRODUCTION_ARM, RoundStatus

LOCK = "scheduler"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _fenced(url: str, holder: str) -> UnitOfWork:
    engine = make_engine(url)
    upgrade(engine)
    return UnitOfWork(engine, fence=lease_fence(LOCK, holder))


def _take_over(engine, clock: Clock, new_holder: str) -> None:
    clock.now += timedelta(seconds=60)  # the old holder's heartbeat is stale
    acquire(engine, LOCK, new_holder, stale_after=30, clock=clock)


def _actions(uow: UnitOfWork) -> int:
    with uow() as s:
        return s.scalar(select(func.count()).select_from(OperatorAction))


def _commit_after_losing_the_lease(url: str) -> None:
    clock = Clock()
    uow = _fenced(url, "first")
    acquire(uow.engine, LOCK, "first", stale_after=30, clock=clock)
    with uow() as s:
        s.add(OperatorAction(actor="first", action="while holding", payload={}))
    _take_over(uow.engine, clock, "second")
    with pytest.raises(LeaseLost, match="second"), uow() as s:
        s.add(OperatorAction(actor="first", action="after losing the lease", payload={}))
    plain = UnitOfWork(uow.engine)
    with plain() as s:
        assert s.scalars(select(OperatorAction.action)).all() == ["while holding"]
    uow.engine.dispose()


def test_commit_after_losing_the_lease_is_refused_sqlite(sqlite_url):
    _commit_after_losing_the_lease(sqlite_url)


@pytest.mark.postgres
def test_commit_after_losing_the_lease_is_refused_postgres(postgres_url):
    _commit_after_losing_the_lease(postgres_url)


def _lease_lost_mid_job(url: str) -> None:
    """The lease is lost while a round trains (a heartbeat blocked by a long write): the job stops at its next
    commit, the round is neither moved nor marked failed, and its late work is not recorded."""
    clock = Clock()
    uow = _fenced(url, "first")
    acquire(uow.engine, LOCK, "first", stale_after=30, clock=clock)
    with uow() as s:
        s.add(Round(arm=PRODUCTION_ARM, number=1, status=RoundStatus.TRAINING, budget=4, strategy="pvar"))

    def train_while_losing_the_lease(cfg, job_uow, round_id):
        _take_over(job_uow.engine, clock, "second")
        with job_uow() as s:  # the training run's bookkeeping: must not land
            s.add(OperatorAction(actor="first", action="trained", payload={"round": round_id}))
        return "checkpoint-that-must-not-be-recorded"

    def unreachable(*_args):
        raise AssertionError("a job that lost its lease went on to the next piece of work")

    services = Services(
        score=unreachable,
        push=unreachable,
        pull=unreachable,
        train=train_while_losing_the_lease,
        evaluate=unreachable,
    )
    with pytest.raises(LeaseLost):
        tick(uow, parse_config({}, env={}), services)
    plain = UnitOfWork(uow.engine)
    with plain() as s:
        rnd = s.scalar(select(Round))
        assert (rnd.status, rnd.reason, rnd.policy_out) == (RoundStatus.TRAINING, None, None)
    assert _actions(plain) == 0
    assert holder_of(uow.engine, LOCK) == "second"
    uow.engine.dispose()


def test_lease_lost_mid_job_records_nothing_sqlite(sqlite_url):
    _lease_lost_mid_job(sqlite_url)


@pytest.mark.postgres
def test_lease_lost_mid_job_records_nothing_postgres(postgres_url):
    _lease_lost_mid_job(postgres_url)


def test_a_dead_holder_on_this_host_is_taken_over_at_once(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = f"{socket.gethostname()}:{int(gone.stdout)}:0123abcd"
    clock = Clock()
    acquire(engine, LOCK, dead, stale_after=30, clock=clock)  # fresh heartbeat, but its process is gone
    acquire(engine, LOCK, "next", stale_after=30, clock=clock)
    assert holder_of(engine, LOCK) == "next"
    engine.dispose()


def test_a_live_holder_is_respected(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    clock = Clock()
    live = f"{socket.gethostname()}:{os.getpid()}:4567cdef"
    acquire(engine, LOCK, live, stale_after=30, clock=clock)
    with pytest.raises(LockHeld):
        acquire(engine, LOCK, "next", stale_after=30, clock=clock)
    engine.dispose()
