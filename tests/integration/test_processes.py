"""Owned-process handling: identity by pid + start time, SIGTERM then SIGKILL, children, reaping."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from annotation.stack.local_stack import ArgillaPrerequisiteError, start_stack
from annotation.stack.processes import (
    ProcessRef,
    children,
    is_alive,
    rss_bytes,
    spawn,
    start_ticks,
    terminate,
)

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(60)"
)
HAS_CHILD = (
    "import subprocess, time; subprocess.Popen(['sleep', '60']); print('up', flush=True); time.sleep(60)"
)


def _spawn_python(tmp_path: Path, name: str, code: str) -> ProcessRef:
    return spawn(
        name,
        [sys.executable, "-c", code],
        env=dict(os.environ),
        cwd=tmp_path,
        log_path=tmp_path / f"{name}.log",
    )


def _wait_for_output(path: Path) -> None:
    deadline = time.monotonic() + 20
    while "up" not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_spawned_process_is_alive_until_terminated(tmp_path: Path) -> None:
    ref = spawn("sleeper", ["sleep", "60"], env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / "s.log")
    assert is_alive(ref)
    assert rss_bytes(ref.pid) > 0
    assert terminate([ref], timeout=5) == [ref]
    assert not is_alive(ref)
    assert start_ticks(ref.pid) is None  # reaped, not left as a zombie


def test_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    """A recorded pid whose start time no longer matches is treated as gone and left alone."""
    real = spawn("other", ["sleep", "60"], env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / "o.log")
    try:
        stale = ProcessRef("stale", real.pid, real.start_ticks - 1)
        assert not is_alive(stale)
        assert terminate([stale], timeout=1) == []
        assert is_alive(real)
    finally:
        terminate([real], timeout=5)


def test_sigterm_ignored_gets_sigkill(tmp_path: Path) -> None:
    ref = _spawn_python(tmp_path, "stubborn", IGNORES_SIGTERM)
    _wait_for_output(tmp_path / "stubborn.log")
    terminate([ref], timeout=0.5)
    assert not is_alive(ref)


def test_children_are_stopped_with_their_parent(tmp_path: Path) -> None:
    ref = _spawn_python(tmp_path, "parent", HAS_CHILD)
    _wait_for_output(tmp_path / "parent.log")
    kids = children(ref)
    assert len(kids) == 1
    terminate([ref], timeout=5)
    assert not is_alive(kids[0])


def test_process_that_exits_by_itself_is_reported_dead(tmp_path: Path) -> None:
    ref = spawn("brief", ["sleep", "0.5"], env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / "b.log")
    assert is_alive(ref)
    deadline = time.monotonic() + 10
    while is_alive(ref) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(ref)
    assert start_ticks(ref.pid) is None  # reaped by is_alive, no zombie left behind


def test_missing_argilla_venv_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_VENV", str(tmp_path / "no-venv"))
    with pytest.raises(ArgillaPrerequisiteError, match="argilla-server.lock.txt"):
        start_stack(tmp_path / "stack")


def test_missing_redis_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_VENV", str(venv.parent))
    monkeypatch.setenv("PVAR_LOOP_REDIS_SERVER", str(tmp_path / "no-redis"))
    with pytest.raises(ArgillaPrerequisiteError, match="apt-get install redis-server"):
        start_stack(tmp_path / "stack")
