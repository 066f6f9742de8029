"""The database going away under `pvar-loop run`: said once when it goes and once when it is back, with the
scheduler's jobs backing off meanwhile, rather than a traceback per job run (a 20 s PostgreSQL restart used to
write thousands of lines)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FIRST_DELAY_S, MAX_DELAY_S = 2.0, 30.0


def unreachable(engine) -> bool:
    """Whether the database cannot be reached now (a connection attempt fails), as opposed to a query that
    failed on a database that is up: that one is a real error and is logged as such."""
    from storage.db import DatabaseUnusable, check_connection

    try:
        check_connection(engine)
    except DatabaseUnusable:
        return True
    return False


class Outage:
    """One outage at a time, shared by the jobs and the lease heartbeat of a scheduler process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.since: float | None = None
        self.retry_at = 0.0
        self.delay = FIRST_DELAY_S
        self._lock = threading.Lock()

    def backing_off(self) -> bool:
        """True while a job should not even try: the database was unreachable and the back-off has not run out."""
        with self._lock:
            return self.since is not None and self.clock() < self.retry_at

    def failed(self, error: BaseException, who: str) -> None:
        """The database was unreachable: warn once per outage, then try again after a growing delay."""
        with self._lock:
            now = self.clock()
            first = self.since is None
            if first:
                self.since, self.delay = now, FIRST_DELAY_S
            else:
                self.delay = min(self.delay * 2, MAX_DELAY_S)
            self.retry_at = now + self.delay
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        if first:
            log.warning(
                "database unreachable (%s: %s); retrying every %.0f-%.0f s, and saying when it is back",
                who,
                reason,
                FIRST_DELAY_S,
                MAX_DELAY_S,
                extra={"event": "database down"},
            )
        else:
            log.debug("database still unreachable (%s: %s); next try in %.0f s", who, reason, self.delay)

    def reachable(self) -> None:
        """The database answered: the end of an outage, if there was one, is said once."""
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            log.info(
                "database reachable again after %.0f s", self.clock() - since, extra={"event": "database up"}
            )


DATABASE = Outage()  # the scheduler process's view of its database


class JobStoreFilter(logging.Filter):
    """APScheduler's "Error getting due jobs from job store" (every 10 s while the database, which holds its
    job store, is away; the error's several lines) is the outage the jobs report: counted into it, once."""

    def __init__(self, engine) -> None:
        super().__init__()
        self.engine = engine

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not str(record.msg).startswith("Error getting due jobs"):
            return True
        if not unreachable(self.engine):
            return True
        error = record.args[-1] if isinstance(record.args, tuple) and record.args else record.getMessage()
        DATABASE.failed(error if isinstance(error, BaseException) else RuntimeError(str(error)), "job store")
        return False


def report_job_store_outages(engine) -> None:
    """Route APScheduler's job-store errors into the outage (one filter per process, on the latest engine)."""
    logger = logging.getLogger("apscheduler.scheduler")
    for f in [f for f in logger.filters if isinstance(f, JobStoreFilter)]:
        logger.removeFilter(f)
    logger.addFilter(JobStoreFilter(engine))
