"""Log hygiene: a busy scheduler job is not a warning every tick; other APScheduler warnings stay warnings."""

from __future__ import annotations

import logging

from loop.rounds.scheduler import BusyJobFilter


def _record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("apscheduler.scheduler", level, __file__, 1, message, None, None)


def test_busy_job_skips_go_to_debug(caplog):
    busy = _record('Execution of job "tick_job" skipped: maximum number of running instances reached (1)')
    logging.getLogger("apscheduler.scheduler").setLevel(logging.INFO)
    assert BusyJobFilter().filter(busy) is False and busy.levelname == "DEBUG"
    logging.getLogger("apscheduler.scheduler").setLevel(logging.DEBUG)
    kept = _record('Execution of job "tick_job" skipped: maximum number of running instances reached (1)')
    assert BusyJobFilter().filter(kept) is True and kept.levelno == logging.DEBUG
    logging.getLogger("apscheduler.scheduler").setLevel(logging.NOTSET)


def test_other_warnings_pass_unchanged():
    missed = _record('Run time of job "tick_job" was missed by 0:05:00')
    assert BusyJobFilter().filter(missed) is True and missed.levelno == logging.WARNING
