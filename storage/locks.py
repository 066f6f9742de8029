"""A lease row per database, so exactly one scheduler drives it. The holder renews a heartbeat; a lease whose
heartbeat is older than `stale_after`, or whose holder process is gone from this host, is taken over.

Holder ids are "[role:]host:pid:random" (role "by-hand": an operator's command), unique per process, so the holder
id is also the fencing token: lease_fence refuses any commit of a process whose lease was taken over."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.errors import PvarLoopError
from storage.models import SchedulerLock


class LockHeld(PvarLoopError, RuntimeError):
    """Another live process holds the lease."""


class LeaseLost(PvarLoopError, RuntimeError):
    """This process's lease was taken over: it must stop, and nothing it did since is recorded."""


def _now() -> datetime:
    return datetime.now(UTC)


def acquire(
    engine: Engine, name: str, holder: str, stale_after: float, *, clock: Callable[[], datetime] = _now
) -> None:
    """Take the lease or raise LockHeld naming the holder (compare-and-swap: racing takers can't both win).
    `clock` is injectable so tests can age a heartbeat without sleeping."""
    with engine.begin() as conn:
        row = conn.execute(select(SchedulerLock).where(SchedulerLock.name == name)).first()
        now = clock()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        SchedulerLock.__table__.insert().values(
                            name=name, holder=holder, heartbeat_at=now, acquired_at=now
                        )
                    )
                return
            except IntegrityError:
                raise LockHeld(f"another scheduler took the {name!r} lock just now") from None
        age = (now - row.heartbeat_at).total_seconds()
        if row.holder != holder and age < stale_after and not _gone_from_this_host(row.holder):
            raise LockHeld(
                f"a scheduler is already running on this database: {row.holder} "
                f"(heartbeat {age:.0f} s ago; taken over after {stale_after:.0f} s of silence)"
            )
        taken = conn.execute(
            update(SchedulerLock)
            .where(
                SchedulerLock.name == name,
                SchedulerLock.holder == row.holder,
                SchedulerLock.heartbeat_at == row.heartbeat_at,
            )
            .values(holder=holder, heartbeat_at=now, acquired_at=now)
        ).rowcount
        if taken != 1:
            raise LockHeld(f"another scheduler took over the {name!r} lock first")


def renew(engine: Engine, name: str, holder: str, *, clock: Callable[[], datetime] = _now) -> bool:
    """Refresh the heartbeat. False means the lease was lost (taken over) and the caller must stop."""
    with engine.begin() as conn:
        n = conn.execute(
            update(SchedulerLock)
            .where(SchedulerLock.name == name, SchedulerLock.holder == holder)
            .values(heartbeat_at=clock())
        ).rowcount
    return n == 1


def release(engine: Engine, name: str, holder: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(SchedulerLock).where(SchedulerLock.name == name, SchedulerLock.holder == holder))


def holder_of(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(select(SchedulerLock.holder).where(SchedulerLock.name == name))


def lease_fence(name: str, holder: str) -> Callable[[Session], None]:
    """A UnitOfWork fence: raise LeaseLost unless `holder` still holds lease `name`.

    The lease row is read FOR UPDATE in the committing transaction, so on PostgreSQL a take-over waits for this
    commit (or this commit sees the take-over); on SQLite the single writer gives the same order."""

    def check(session: Session) -> None:
        current = session.scalar(
            select(SchedulerLock.holder).where(SchedulerLock.name == name).with_for_update()
        )
        if current != holder:
            raise LeaseLost(
                f"the {name!r} lease of {holder} was taken over by {current or 'nobody'}; "
                "this process stops and records nothing more"
            )

    return check


def _gone_from_this_host(holder: str) -> bool:
    """True when `holder` ("[role:]host:pid:token", e.g. "by-hand:...") names a process of this host that no
    longer exists. Read from the right: a role prefix may hold colons, a host name cannot."""
    parts = holder.split(":")
    if len(parts) < 3:
        return False
    host, pid_text = parts[-3], parts[-2]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False
