"""Log hygiene: a busy scheduler job is not a warning every tick; other APScheduler warnings stay warnings."""

from __future__ import annotations

import logging

from loop.cli.app import PACKAGE_LOGGERS, configure_logging
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


def test_every_module_logs_under_its_package_logger():
    """`logging.getLogger(__name__)` everywhere: --verbose reaches every module through three loggers."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    named = []
    for package in PACKAGE_LOGGERS:
        for path in (root / package).rglob("*.py"):
            if path.name == "argilla_engine.py":  # runs as a script inside the Argilla server's own venv
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", None) == "getLogger"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).split(".")[0] in (*PACKAGE_LOGGERS, "pvar_loop")
                ):
                    named.append(f"{path.relative_to(root)}:{node.lineno}")
    assert named == []


def test_verbose_controls_every_package_logger():
    for verbose, level in ((True, logging.DEBUG), (False, logging.INFO)):
        configure_logging(verbose)
        for name in ("loop.rounds.state", "annotation.gateway", "storage.locks"):
            assert logging.getLogger(name).getEffectiveLevel() == level
    for name in PACKAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
