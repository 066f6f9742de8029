"""`pvar-loop run`: a foreground APScheduler that drives the rounds of one database.

One scheduler per database (a lease row with a heartbeat; see storage/locks.py). Jobs live in APScheduler's
SQLAlchemyJobStore on the project database (table apscheduler_jobs, not migrated by Alembic), with fixed ids,
coalescing, one instance at a time and an explicit misfire grace. Job functions are module-level and take only
the config path (job state is pickled into the store).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loop.config import Config, load_config
from loop.rounds.outage import DATABASE, report_job_store_outages, unreachable

log = logging.getLogger(__name__)

LOCK = "scheduler"
TICK_JOB, POLL_JOB = "pvar-loop-tick", "pvar-loop-poll"
BY_HAND = "by-hand:"  # the lease holder's prefix while a by-hand command moves a round


def _context(config_path: str | None, holder: str | None):
    """Config and a unit of work whose every commit checks that `holder` still holds the lease (fencing)."""
    from storage.db import UnitOfWork, make_engine
    from storage.locks import lease_fence

    cfg = load_config(Path(config_path) if config_path else None)
    fence = lease_fence(LOCK, holder) if holder else None
    return cfg, UnitOfWork(make_engine(cfg.database_url), fence=fence)


def tick_job(config_path: str | None, holder: str | None = None) -> None:
    """Advance the open round as far as it goes now (or start the next one). `holder` (absent in jobs stored
    before fencing, which `run` replaces at start) is the lease this work is fenced by."""
    from loop.rounds.operator_commands import carry_out_pending
    from loop.rounds.state import Services, tick
    from storage.locks import LeaseLost

    cfg, uow = _context(config_path, holder)
    if DATABASE.backing_off():
        uow.engine.dispose()
        return
    try:
        services = Services.default()
        # Commands given while this scheduler runs (`round cancel/advance`) first, under the same fenced uow.
        carry_out_pending(uow, cfg, services)
        was_open = _round_open(uow)
        DATABASE.reachable()
        message = tick(uow, cfg, services)
        level = _tick_level(message, idle=not was_open and not _round_open(uow))
        log.log(level, "tick: %s", message, extra={"event": "tick"})
    except LeaseLost as e:  # the heartbeat thread stops the scheduler; this job records nothing more
        log.error("%s", e, extra={"event": "lease lost"})
    except Exception as e:
        if not unreachable(uow.engine):
            raise
        DATABASE.failed(e, "tick")
    finally:
        uow.engine.dispose()


_idle_said: list[str] = []  # the last "why no round runs" logged at INFO, so it is said once, not every tick


def _round_open(uow) -> bool:
    from storage.repositories.rounds import open_round

    with uow() as session:
        return open_round(session) is not None


def _tick_level(message: str, *, idle: bool) -> int:
    """Round transitions are logged where they happen (loop.rounds.state), so a tick's own line is DEBUG; only
    a tick that found no round to drive and could not start one (new rounds paused) says why, once, at INFO."""
    if not idle:
        _idle_said.clear()
        return logging.DEBUG
    if _idle_said == [message]:
        return logging.DEBUG
    _idle_said[:] = [message]
    return logging.INFO


def poll_job(config_path: str | None, holder: str | None = None) -> None:
    """Pull labels of a collecting round between ticks, so `status` stays current."""
    from loop.rounds.state import Services
    from storage.repositories.rounds import open_round
    from storage.statuses import RoundStatus

    cfg, uow = _context(config_path, holder)
    if DATABASE.backing_off():
        uow.engine.dispose()
        return
    try:
        with uow() as session:
            rnd = open_round(session)
            round_id = rnd.id if rnd is not None and rnd.status == RoundStatus.COLLECTING else None
        DATABASE.reachable()
        if round_id is not None:
            Services.default().pull(cfg, uow, round_id)
    except Exception as e:
        if not unreachable(uow.engine):
            raise
        DATABASE.failed(e, "poll")
    finally:
        uow.engine.dispose()


class BusyJobFilter(logging.Filter):
    """A tick that finds the previous one still running (a DPO run takes minutes) is expected, not a warning:
    APScheduler's "maximum number of running instances reached" goes to DEBUG instead of every tick at WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "maximum number of running instances" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def heartbeat_interval(tick_seconds: int) -> float:
    """Seconds between lease renewals; a lease silent for three of them is presumed dead."""
    return max(1.0, min(10.0, tick_seconds / 3))


def scheduler_status(session, cfg: Config) -> dict:
    """Whether a scheduler drives this database: running (holder, heartbeat age), stale or not running."""
    from datetime import UTC, datetime

    from storage.repositories.queries import scheduler_lease

    lease = scheduler_lease(session, LOCK)
    if lease is None:
        return {"state": "not running"}
    age = (datetime.now(UTC) - lease.heartbeat_at).total_seconds()
    stale = age >= 3 * heartbeat_interval(cfg.scheduler.tick_seconds)
    return {
        "state": "stale" if stale else "running",
        "holder": lease.holder,
        "heartbeat_at": lease.heartbeat_at.isoformat(timespec="seconds"),
        "heartbeat_age_s": round(age, 1),
        "since": lease.acquired_at.isoformat(timespec="seconds"),
    }


def running_scheduler(session, cfg: Config) -> str | None:
    """The holder of a live `pvar-loop run` lease (None: none runs, its lease is stale, or a by-hand command
    holds it): the scheduler that a round command given now is queued for."""
    state = scheduler_status(session, cfg)
    if state["state"] != "running" or state["holder"].startswith(BY_HAND):
        return None
    return state["holder"]


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat(threading.Thread):
    """Renews the lease; if it is ever lost, stops the scheduler rather than run two drivers."""

    def __init__(self, engine, holder: str, interval: float, on_lost) -> None:
        super().__init__(name="pvar-loop-heartbeat", daemon=True)
        self.engine, self.holder, self.interval, self.on_lost = engine, holder, interval, on_lost
        self.stopped = threading.Event()

    def run(self) -> None:
        from storage.locks import renew

        while not self.stopped.wait(self.interval):
            try:
                alive = renew(self.engine, LOCK, self.holder)
            except Exception as e:
                if unreachable(self.engine):
                    DATABASE.failed(e, "lease heartbeat")  # said once per outage, with the jobs' failures
                else:
                    log.exception("heartbeat failed; will retry")
                continue
            DATABASE.reachable()
            if not alive:
                log.error("scheduler lease lost to another process; stopping")
                self.on_lost()
                return


class StopFlag:
    """Set by SIGTERM/SIGINT or a lost lease. Handlers only flip a bool: taking locks (Event.set, pool or
    scheduler shutdown) inside a signal handler can deadlock the main thread that the signal interrupted."""

    def __init__(self) -> None:
        self.requested = False
        self.signals = 0

    def on_signal(self, signum, _frame) -> None:
        self.signals += 1
        if self.signals > 1:  # a second Ctrl-C/TERM: stop now, don't wait for the running job
            raise KeyboardInterrupt
        self.requested = True

    def set(self) -> None:
        self.requested = True

    def wait(self, seconds: float, step: float = 0.2) -> bool:
        """Sleep up to `seconds` in short naps; True as soon as a stop was requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(step, max(0.0, deadline - time.monotonic())))
        return self.requested


def run_scheduler(cfg: Config, config_path: str | None, *, wait: bool = False, once: bool = False) -> int:
    """Run until SIGTERM/SIGINT. With `wait`, wait for the current holder to stop or die, then take over.

    On the first signal no new job starts and a running one finishes (the lease is kept meanwhile); a second
    signal stops at once, which is safe too, since every round step is idempotent."""
    from storage.db import make_engine
    from storage.locks import release
    from storage.migrate import ensure_at_head

    engine = make_engine(cfg.database_url)
    ensure_at_head(engine)
    heartbeat_every = heartbeat_interval(cfg.scheduler.tick_seconds)
    holder = holder_name()
    stop = StopFlag()
    _install_handlers(stop)
    if not _take_lease(engine, holder, heartbeat_every, stop, wait=wait):
        return 0
    log.info("scheduler %s holds the lock", holder, extra={"event": "lock"})
    beat = Heartbeat(engine, holder, heartbeat_every, stop.set)
    beat.start()
    scheduler = None
    try:
        if once:
            tick_job(config_path, holder)
            return 0
        scheduler = _start_jobs(engine, cfg, config_path, holder)
        stop.wait(float("inf"))
        log.info("stopping scheduler; a running job finishes first", extra={"event": "stop"})
        scheduler.shutdown(wait=True)
        return 0
    except KeyboardInterrupt:
        log.warning("stopped without waiting for the running job", extra={"event": "stop"})
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        return 130
    finally:
        beat.stopped.set()
        release(engine, LOCK, holder)
        engine.dispose()


def _install_handlers(stop: StopFlag) -> None:
    """SIGTERM/SIGINT flip the stop flag; APScheduler's "job still running" lines are filtered (once)."""
    apscheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, BusyJobFilter) for f in apscheduler_log.filters):
        apscheduler_log.addFilter(BusyJobFilter())
    signal.signal(signal.SIGTERM, stop.on_signal)
    signal.signal(signal.SIGINT, stop.on_signal)


def _take_lease(engine, holder: str, heartbeat_every: float, stop: StopFlag, *, wait: bool) -> bool:
    """Acquire the scheduler lease; with `wait`, retry until the holder stops or dies (False: a stop was
    requested meanwhile). Without `wait`, LockHeld names the holder."""
    from storage.locks import LockHeld, acquire

    while True:
        try:
            acquire(engine, LOCK, holder, heartbeat_every * 3)
            return True
        except LockHeld as e:
            if not wait:
                raise
            log.info("%s; waiting", e)
            if stop.wait(heartbeat_every):
                return False


def _start_jobs(engine, cfg: Config, config_path: str | None, holder: str):
    """The started APScheduler with its two fixed jobs (tick and poll) in the database job store."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    s = cfg.scheduler
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": s.misfire_grace_seconds,
        },
        timezone="UTC",
    )
    scheduler.add_job(
        tick_job,
        "interval",
        seconds=s.tick_seconds,
        id=TICK_JOB,
        replace_existing=True,
        args=[config_path, holder],
        next_run_time=_soon(),
    )
    scheduler.add_job(
        poll_job,
        "interval",
        seconds=s.poll_seconds,
        id=POLL_JOB,
        replace_existing=True,
        args=[config_path],
    )
    report_job_store_outages(engine)
    scheduler.start()
    return scheduler


@contextmanager
def by_hand(cfg: Config, uow=None) -> Iterator[None]:
    """Hold the scheduler lease (with a heartbeat) while a by-hand command moves a round: one driver per
    database, whether it is `pvar-loop run` or an operator. LockHeld names the running scheduler. While held,
    `uow`'s commits are fenced by the lease like the scheduler's (a by-hand step that lost it records nothing)."""
    from storage.db import make_engine
    from storage.locks import acquire, lease_fence, release

    engine = make_engine(cfg.database_url)
    heartbeat_every = heartbeat_interval(cfg.scheduler.tick_seconds)
    holder = f"{BY_HAND}{holder_name()}"
    try:
        acquire(engine, LOCK, holder, heartbeat_every * 3)
        beat = Heartbeat(engine, holder, heartbeat_every, lambda: None)
        beat.start()
        fence_before = uow.fence if uow is not None else None
        if uow is not None:
            uow.fence = lease_fence(LOCK, holder)
        try:
            yield
        finally:
            if uow is not None:
                uow.fence = fence_before
            beat.stopped.set()
            release(engine, LOCK, holder)
    finally:
        engine.dispose()


def _soon():
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=1)
