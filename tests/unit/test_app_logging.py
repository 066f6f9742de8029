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


def test_apscheduler_is_quiet_unless_verbose():
    """Issue 14 point 10: APScheduler's per-job INFO lines only with -v."""
    for verbose, level in ((False, logging.WARNING), (True, logging.DEBUG)):
        configure_logging(verbose)
        assert logging.getLogger("apscheduler.executors.default").getEffectiveLevel() == level
        assert logging.getLogger("apscheduler.scheduler").getEffectiveLevel() == level
    configure_logging(False)
    for name in PACKAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_the_argilla_sdk_login_line_goes_to_debug():
    """The SDK logs "Logged in as" through the root logger on every connect: DEBUG unless the root logger is."""
    from annotation.api import SdkLoginFilter

    root = logging.getLogger()
    before = root.level

    def login() -> logging.LogRecord:
        return logging.LogRecord("root", logging.INFO, __file__, 1, "Argilla: Logged in as owner", None, None)

    try:
        root.setLevel(logging.INFO)
        record = login()
        assert SdkLoginFilter().filter(record) is False and record.levelname == "DEBUG"
        root.setLevel(logging.DEBUG)
        assert SdkLoginFilter().filter(login()) is True
        other = logging.LogRecord("root", logging.INFO, __file__, 1, "something else", None, None)
        assert SdkLoginFilter().filter(other) is True and other.levelno == logging.INFO
    finally:
        root.setLevel(before)


def test_progress_off_a_terminal_is_a_periodic_log_line(caplog):
    from loop.progress import LogProgress, progress

    assert isinstance(progress(10, "scoring", "prompt"), LogProgress)  # pytest's stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="loop.progress"):
        with progress(10, "scoring", "prompt", every_s=3600) as bar:
            bar.update(5)  # within the interval: no line
        with progress(10, "scoring", "prompt", every_s=0) as bar:
            bar.update(5)
        with progress(10, "scoring", "prompt", enabled=False, every_s=0) as bar:
            bar.update(5)  # --no-progress: nothing at all
    lines = [r.getMessage() for r in caplog.records if r.name == "loop.progress"]
    assert len(lines) == 1 and lines[0].startswith("scoring: 5/10 prompts (50%), ")


def test_a_tick_line_is_info_only_when_it_says_once_why_no_round_runs():
    from loop.rounds.scheduler import _tick_level

    paused = "budget is 0 for round 3: new rounds are paused (`pvar-loop budget set N`)"
    assert _tick_level("round 2: collecting", idle=False) == logging.DEBUG  # transitions are logged already
    assert _tick_level(paused, idle=True) == logging.INFO
    assert _tick_level(paused, idle=True) == logging.DEBUG  # every later tick: not again
    assert _tick_level("round 3: collecting", idle=False) == logging.DEBUG
    assert _tick_level(paused, idle=True) == logging.INFO  # paused again after a round: said again


def test_library_info_and_python_warnings_go_to_debug():
    """Issue 26: the Argilla SDK's "UsersAPI: Got user", transformers' and datasets' INFO lines and Python
    warnings (a FutureWarning) are DEBUG for an operator; --verbose shows them."""
    from loop.cli.app import DemoteToDebug

    root, before = logging.getLogger(), logging.getLogger().level
    try:
        for verbose in (False, True):
            configure_logging(verbose)
            assert logging.getLogger("argilla.sdk").isEnabledFor(logging.INFO) is verbose
            for library in ("transformers", "datasets", "trl", "peft"):
                assert verbose or not logging.getLogger(library).isEnabledFor(logging.INFO), library
            warning = logging.LogRecord(
                "py.warnings", logging.WARNING, __file__, 1, "FutureWarning: x", None, None
            )
            assert DemoteToDebug().filter(warning) is verbose and warning.levelname == "DEBUG"
            assert any(isinstance(f, DemoteToDebug) for f in logging.getLogger("py.warnings").filters)
    finally:
        logging.captureWarnings(False)
        root.setLevel(before)
        for name in PACKAGE_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
