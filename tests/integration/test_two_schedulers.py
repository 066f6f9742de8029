"""Two `pvar-loop run` processes on one database: the second refuses (or waits with --wait); killing the first
with SIGKILL lets the waiting one take over. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import time

import pytest

from storage.db import make_engine
from storage.locks import holder_of
from tests.integration.round_project import make_project


def _wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
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
            time.sleep(2)
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


@pytest.mark.slow
def test_two_schedulers_sqlite(tmp_path, tiny_models):
    _two_schedulers(tmp_path, tiny_models, f"sqlite:///{tmp_path / 'two.db'}")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_schedulers_postgres(tmp_path, tiny_models, postgres_url):
    _two_schedulers(tmp_path, tiny_models, postgres_url)
