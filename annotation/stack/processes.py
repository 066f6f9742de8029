"""Owned background processes: spawn, identify (pid + kernel start time), measure and stop them.

A pid alone is not an identity: after a reboot or a long time it may belong to another program. Every process
the project starts is recorded with its start time from /proc, and is only signalled while both still match.
Linux only (reads /proc), like the rest of the local stack.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Popen objects of children started by this interpreter, kept so they can be reaped (no zombies, no
# "subprocess still running" warnings); processes started by another interpreter are only signalled.
_POPENS: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class ProcessRef:
    """A process we started: its pid and its start time in clock ticks since boot."""

    name: str
    pid: int
    start_ticks: int

    def to_json(self) -> dict:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @classmethod
    def from_json(cls, name: str, data: dict) -> ProcessRef:
        return cls(name=name, pid=int(data["pid"]), start_ticks=int(data["start_ticks"]))


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state, 1 = ppid, 19 = starttime)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """Start time of a live process, None if it does not exist or is a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(ref: ProcessRef) -> bool:
    """True only while the pid is running AND is still the process we started."""
    _reap(ref.pid)
    return start_ticks(ref.pid) == ref.start_ticks


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children(ref: ProcessRef) -> list[ProcessRef]:
    """Live direct children (e.g. rq work-horses), so a stop never orphans them."""
    if not is_alive(ref):
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[1]) == ref.pid:
            found.append(ProcessRef(f"{ref.name}-child", int(entry.name), int(fields[19])))
    return found


def spawn(name: str, cmd: list[str], *, env: dict[str, str], cwd: Path, log_path: Path) -> ProcessRef:
    """Start `cmd` in its own session (it outlives the caller and ignores its Ctrl-C), output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            umask=0o077,  # what it writes (databases, temp copies, logs) is private to this user
        )
    _POPENS[proc.pid] = proc
    ticks = start_ticks(proc.pid)
    if ticks is None:
        proc.wait()
        raise RuntimeError(
            f"{name} exited at once (code {proc.returncode}); see {log_path}:\n{tail(log_path)}"
        )
    return ProcessRef(name, proc.pid, ticks)


def _reap(pid: int) -> None:
    """Collect the exit status of our own dead child so it does not linger as a zombie."""
    proc = _POPENS.get(pid)
    if proc is not None and proc.poll() is not None:
        del _POPENS[pid]
        return
    if proc is None:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _signal(ref: ProcessRef, sig: int) -> None:
    if is_alive(ref):
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, sig)


def terminate(refs: list[ProcessRef], timeout: float = 10.0) -> list[ProcessRef]:
    """SIGTERM the processes (and their children), SIGKILL what is left after `timeout`; return the killed."""
    targets = [r for r in refs if is_alive(r)]
    targets += [c for r in targets for c in children(r)]
    for ref in targets:
        _signal(ref, signal.SIGTERM)
    if not _wait_gone(targets, timeout):
        for ref in targets:
            _signal(ref, signal.SIGKILL)
        _wait_gone(targets, 5.0)
    still = [r for r in targets if is_alive(r)]
    if still:
        raise RuntimeError(f"could not stop {[(r.name, r.pid) for r in still]}")
    return [r for r in targets if r in refs]


def _wait_gone(refs: list[ProcessRef], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(is_alive(r) for r in refs):
            return True
        time.sleep(0.05)
    return not any(is_alive(r) for r in refs)


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
