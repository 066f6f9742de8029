"""Two `pvar-loop run` processes on one database: the second refuses (or waits with --wait); killing the first
with SIGKILL lets the waiting one take over. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import time

import pytest

from storage.db import make_engine
from storage.locks import holder_of
from tests.support.round_project import make_project


def _wait_for(predicate, timeout: float, what: str, step: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def _two_schedulers(tmp_path, tiny_models, url: str) -> None:
    project = make_project(tmp_path, tiny_models, database_url=url)
    assert project.cli("budget", "set", "0").returncode == 0  # nothing to advance: this is about the lease
    engine = make_engine(url)
    first = project.popen("run", log=tmp_path / "first.log")
    try:
        holder = _wait_for(lambda: holder_of(engine, "scheduler"), 60, "the first scheduler's lease")
        assert f":{first.pid}:" in holder
        refused = project.cli("run")
        assert refused.returncode == 2 and "already running on this database" in refused.stderr
        assert "--wait" in refused.stderr
        second = project.popen("run", "--wait", log=tmp_path / "second.log")
        try:
            _wait_for(lambda: "waiting" in (tmp_path / "second.log").read_text(), 60, "the second to wait")
            assert f":{first.pid}:" in holder_of(engine, "scheduler")  # still the first one's
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            _wait_for(lambda: f":{second.pid}:" in (holder_of(engine, "scheduler") or ""), 60, "take-over")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
        assert holder_of(engine, "scheduler") is None  # a clean stop releases the lease
        assert "waiting" in (tmp_path / "second.log").read_text()
    finally:
        if first.poll() is None:
            first.kill()
        engine.dispose()


def _stop_right_after_start(tmp_path, tiny_models, url: str) -> None:
    """SIGTERM at once after the lease is taken, while the scheduler is starting and its first tick is due: it
    must exit 0 and free the lease each time (a signal handler that took locks once hung here)."""
    project = make_project(tmp_path, tiny_models, database_url=url)
    assert project.cli("budget", "set", "0").returncode == 0
    engine = make_engine(url)
    try:
        for attempt, delay in enumerate((0.0, 0.05, 0.1, 0.2, 0.4, 1.2)):
            proc = project.popen("run", log=tmp_path / f"run{attempt}.log")
            try:
                _wait_for(lambda: holder_of(engine, "scheduler"), 60, "the lease", step=0.01)
                time.sleep(delay)
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0, (tmp_path / f"run{attempt}.log").read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert holder_of(engine, "scheduler") is None
    finally:
        engine.dispose()


@pytest.mark.slow
def test_stop_right_after_start_sqlite(tmp_path, tiny_models):
    _stop_right_after_start(tmp_path, tiny_models, f"sqlite:///{tmp_path / 'stop.db'}")


@pytest.mark.slow
@pytest.mark.postgres
def test_stop_right_after_start_postgres(tmp_path, tiny_models, postgres_url):
    _stop_right_after_start(tmp_path, tiny_models, postgres_url)


@pytest.mark.slow
def test_two_schedulers_sqlite(tmp_path, tiny_models):
    _two_schedulers(tmp_path, tiny_models, f"sqlite:///{tmp_path / 'two.db'}")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_schedulers_postgres(tmp_path, tiny_models, postgres_url):
    _two_schedulers(tmp_path, tiny_models, postgres_url)
