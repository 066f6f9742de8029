"""A lease row per database, so exactly one scheduler drives it. The holder renews a heartbeat; a lease whose
heartbeat is older than `stale_after` is taken over (its holder is presumed dead)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from storage.errors import PvarLoopError
from storage.models import SchedulerLock


class LockHeld(PvarLoopError, RuntimeError):
    """Another live process holds the lease."""


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
        if row.holder != holder and age < stale_after:
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
