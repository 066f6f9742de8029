"""A real local Argilla 2.8 stack (Redis, osmem, Argilla server, rq worker) the project starts and stops.

Argilla's server lives in its own venv (its pins clash with the ML stack); this module only launches
processes and talks HTTP, so it imports nothing from argilla_server. osmem keeps its index in memory, so every
start uses a fresh SQLite database too. Everything the stack writes stays under `root` (mode 700; its
processes run with umask 077, so what they write is 600: the database holds every user's API key):

    root/stack.json   state (mode 600): pids + start times, ports, URL, owner credentials, Redis password
    root/logs/        one log per process and per set-up command (kept after stop; no secret is logged)
    root/home/        ARGILLA_HOME_PATH with the SQLite database (removed on stop)
    root/redis/       redis.conf with the password Redis requires (removed on stop)
    root/tmp/         TMPDIR of every process; Argilla copies its UI there on each start (removed on stop)

Secrets reach processes through the environment or a 600 file, never the command line (visible in `ps`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from threading import Event

from annotation.stack.processes import ProcessRef, is_alive, rss_bytes, terminate
from annotation.stack.services import (
    ArgillaPrerequisiteError,
    ArgillaStackError,
    OwnerAccount,
    api_answers,
    argilla_venv,
    check_port_free,
    create_owner,
    free_port,
    http_status,
    prepare_root,
    prerequisites,
    raise_if_cancelled,
    redis_answers,
    reindex,
    run_cli,
    service_env,
    spawn_osmem,
    spawn_redis,
    spawn_server,
    spawn_worker,
    wait_for_api,
    wait_until,
)

__all__ = [
    "STATE_FILE",
    "ArgillaPrerequisiteError",
    "ArgillaStackError",
    "ProcessStatus",
    "StackInfo",
    "StackStatus",
    "load_stack",
    "restart_server",
    "stack_status",
    "start_server",
    "start_stack",
    "stop_server",
    "stop_stack",
]

STATE_FILE = "stack.json"
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackInfo:
    """How to reach a running stack and which processes belong to it."""

    root: Path
    url: str
    api_key: str
    username: str
    password: str
    workspace: str
    ports: dict[str, int]
    processes: dict[str, ProcessRef]
    venv: Path
    started_in_s: float = 0.0
    auth_secret: str = ""  # ARGILLA_AUTH_SECRET_KEY, signs UI sessions
    redis_password: str = ""  # Redis refuses clients without it
    stopped: bool = False  # stopped by stop_stack (data kept); False with dead processes means a crash


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int
    alive: bool
    rss_bytes: int


@dataclass(frozen=True)
class StackStatus:
    url: str | None
    api_ok: bool
    processes: dict[str, ProcessStatus] = field(default_factory=dict)
    stopped: bool = False  # stopped cleanly by stop_stack, data kept

    @property
    def running(self) -> bool:
        return self.api_ok and bool(self.processes) and all(p.alive for p in self.processes.values())

    @property
    def state(self) -> str:
        """absent (nothing recorded), running, stopped (by stop_stack; data kept), or crashed (a process died,
        or the API does not answer, without a stop: start_stack recovers it in place)."""
        if self.url is None:
            return "absent"
        if self.running:
            return "running"
        if self.stopped and not any(p.alive for p in self.processes.values()):
            return "stopped"
        return "crashed"

    @property
    def dead(self) -> list[str]:
        return [p.name for p in self.processes.values() if not p.alive]

    @property
    def total_rss_bytes(self) -> int:
        return sum(p.rss_bytes for p in self.processes.values())


def _write_state(info: StackInfo) -> None:
    data = asdict(info)
    data.update(root=str(info.root), venv=str(info.venv))
    data["processes"] = {name: ref.to_json() for name, ref in info.processes.items()}
    path = info.root / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # the file holds the owner's API key and password
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def load_stack(root: Path) -> StackInfo:
    """The StackInfo recorded by start_stack under `root`."""
    path = Path(root) / STATE_FILE
    try:
        data = json.loads(path.read_text())
        return StackInfo(
            root=Path(data["root"]),
            url=data["url"],
            api_key=data["api_key"],
            username=data["username"],
            password=data["password"],
            workspace=data["workspace"],
            ports={k: int(v) for k, v in data["ports"].items()},
            processes={k: ProcessRef.from_json(k, v) for k, v in data["processes"].items()},
            venv=Path(data["venv"]),
            started_in_s=float(data.get("started_in_s", 0.0)),
            auth_secret=data.get("auth_secret", ""),
            redis_password=data.get("redis_password", ""),
            stopped=bool(data.get("stopped", False)),
        )
    except FileNotFoundError as e:
        raise ArgillaStackError(f"no local Argilla stack recorded under {root} ({path} missing)") from e
    except (ValueError, KeyError, TypeError) as e:
        raise ArgillaStackError(f"{path}: unreadable stack state ({e!r}); stop the processes by hand") from e


def start_stack(
    root: Path,
    *,
    port: int | None = None,
    workspace: str = "pvar-loop",
    username: str = "owner",
    timeout: float = 180.0,
    cancel: Event | None = None,
) -> StackInfo:
    """Start Redis, osmem, Argilla (migrated database, owner user + workspace), its server and worker.

    A stack recorded under `root` that was stopped, or crashed (some or all of its processes dead), is
    restarted in place: what is left of its processes is stopped, its database kept, the search index rebuilt
    from it, and the same URL (when the port is still free), owner and keys are used again. Blocks until the
    API authenticates the owner's key. Ports are chosen free unless `port` (the server's) is given. Raises
    ArgillaStackError if the stack already runs; on any failure everything started so far is stopped again
    (the data stays). `cancel`, set from another thread, ends a start run in the background the same way at
    its next wait (within a set-up command's time).
    """
    t0 = time.monotonic()
    root = Path(root).resolve()
    previous = _previous_stack(root)
    venv = argilla_venv()
    python, redis_bin, osmem_bin = prerequisites(venv)
    if port is not None:
        check_port_free(port)
    shutil.rmtree(root / "tmp", ignore_errors=True)  # a crashed stack's UI copies
    prepare_root(root)
    old = previous.ports if previous else {}
    ports = {name: _reuse_port(old.get(name)) for name in ("redis", "osmem")}
    ports["server"] = port or _reuse_port(old.get("server"))
    if previous is not None:
        auth_secret = previous.auth_secret or secrets.token_hex(32)
        redis_password = previous.redis_password or secrets.token_urlsafe(24)
        username, workspace = previous.username, previous.workspace
        api_key, password = previous.api_key, previous.password
    else:
        auth_secret, redis_password = secrets.token_hex(32), secrets.token_urlsafe(24)
        api_key, password = f"owner.{secrets.token_urlsafe(24)}", secrets.token_urlsafe(16)
    env = service_env(root, venv, ports, auth_secret, redis_password)
    logs = root / "logs"
    url = f"http://127.0.0.1:{ports['server']}"
    started: dict[str, ProcessRef] = {}
    try:
        started["redis"] = spawn_redis(root, redis_bin, env, ports["redis"], redis_password)
        started["osmem"] = spawn_osmem(root, osmem_bin, env, ports["osmem"])
        run_cli("migrate", python, ["database", "migrate"], env, root)  # overlaps redis/osmem start-up
        _LOG.info("argilla stack: database migrated after %.1f s", time.monotonic() - t0)
        redis_up = functools.partial(redis_answers, ports["redis"], redis_password)
        wait_until("redis", redis_up, started["redis"], logs / "redis.log", 30, cancel)
        osmem_url = f"http://127.0.0.1:{ports['osmem']}/"
        wait_until(
            "osmem", lambda: http_status(osmem_url) == 200, started["osmem"], logs / "osmem.log", 30, cancel
        )
        if previous is not None:
            # The index is rebuilt before the server answers: no request sees (or writes to) a missing one.
            reindex(python, env, root)
            _LOG.info("argilla stack: search index rebuilt after %.1f s", time.monotonic() - t0)
            started["server"] = spawn_server(root, python, env, ports["server"])
        else:
            # The server boots while the owner is created: the API key is only needed once it answers.
            started["server"] = spawn_server(root, python, env, ports["server"])
            raise_if_cancelled(cancel)
            create_owner(python, env, root, OwnerAccount(username, password, api_key, workspace))
            _LOG.info(
                "argilla stack: owner %r and workspace %r created after %.1f s",
                username,
                workspace,
                time.monotonic() - t0,
            )
        wait_for_api(url, api_key, started["server"], logs / "server.log", timeout, cancel)
        # Only background jobs need the worker (queued jobs wait in Redis): on 2 cores, booting it
        # alongside the server and the owner CLI would only slow all three down.
        started["worker"] = spawn_worker(root, python, env)
    except BaseException:
        terminate(list(started.values()))
        raise
    elapsed = round(time.monotonic() - t0, 2)
    info = StackInfo(
        root,
        url,
        api_key,
        username,
        password,
        workspace,
        ports,
        started,
        venv,
        elapsed,
        auth_secret,
        redis_password,
    )
    _write_state(info)
    _LOG.info("argilla stack: %s answers after %.1f s (state in %s)", url, elapsed, root / STATE_FILE)
    return info


def _previous_stack(root: Path) -> StackInfo | None:
    """The stack recorded under `root` if it is stopped or crashed (what is left of it is stopped here);
    None if there is none. Refuses a running stack, and a database without the state that holds its owner's
    credentials."""
    if not (root / STATE_FILE).exists():
        if (root / "home" / "argilla.db").exists():
            raise ArgillaStackError(
                f"{root / 'home' / 'argilla.db'} holds an Argilla database but {root / STATE_FILE} (its owner "
                "key) is missing; `pvar-loop argilla down --purge` deletes it"
            )
        return None
    previous = load_stack(root)
    alive = [ref for ref in previous.processes.values() if is_alive(ref)]
    if alive and len(alive) == len(previous.processes) and api_answers(previous.url, previous.api_key):
        raise ArgillaStackError(
            f"a local Argilla stack already runs under {root} at {previous.url} "
            "(`pvar-loop argilla down` stops it)"
        )
    if alive:
        _LOG.warning(
            "argilla stack under %s: %s still running, stopped before the restart",
            root,
            ", ".join(ref.name for ref in alive),
        )
        _terminate_in_order(previous.processes, 10.0, root)
    return previous


def _reuse_port(port: int | None) -> int:
    """The stack's previous port while it is free (bookmarked URLs keep working), else a free one."""
    if port is not None:
        try:
            check_port_free(port)
            return port
        except ArgillaStackError:
            _LOG.warning("port %d is taken now: the restarted stack uses another one", port)
    return free_port()


def stop_server(root: Path, timeout: float = 10.0) -> None:
    """Stop only the Argilla server process (Redis, osmem and the DB keep their data)."""
    info = load_stack(root)
    terminate([info.processes["server"]], timeout)


def start_server(root: Path, timeout: float = 120.0) -> StackInfo:
    """Start the server again on the same port and wait until it answers; returns the updated StackInfo."""
    info = load_stack(root)
    if is_alive(info.processes["server"]):
        raise ArgillaStackError(
            f"the Argilla server under {root} is still running (pid {info.processes['server'].pid})"
        )
    env = service_env(
        info.root, info.venv, info.ports, info.auth_secret or secrets.token_hex(32), info.redis_password
    )
    ref = spawn_server(info.root, info.venv / "bin" / "python", env, info.ports["server"])
    try:
        wait_for_api(info.url, info.api_key, ref, info.root / "logs" / "server.log", timeout)
    except BaseException:
        terminate([ref])
        raise
    info = replace(info, processes={**info.processes, "server": ref})
    _write_state(info)
    return info


def restart_server(root: Path, timeout: float = 120.0) -> StackInfo:
    """Stop and start the server process only (e.g. to test that a push survives a server restart)."""
    stop_server(root)
    return start_server(root, timeout)


def stack_status(root: Path) -> StackStatus:
    """Whether each recorded process is alive (and its RSS), and whether the API answers."""
    try:
        info = load_stack(root)
    except ArgillaStackError:
        return StackStatus(url=None, api_ok=False)
    processes = {}
    for name, ref in info.processes.items():
        alive = is_alive(ref)
        processes[name] = ProcessStatus(name, ref.pid, alive, rss_bytes(ref.pid) if alive else 0)
    api_ok = any(p.alive for p in processes.values()) and api_answers(info.url, info.api_key)
    return StackStatus(url=info.url, api_ok=api_ok, processes=processes, stopped=info.stopped)


def stop_stack(root: Path, timeout: float = 10.0, *, purge: bool = False) -> list[str]:
    """Stop exactly the processes start_stack recorded; the data stays for the next start (logs too).

    purge=True deletes the stack's database, state and temp files as well (logs stay). Returns the names of
    the processes that were still running. A no-op when nothing is recorded.
    """
    root = Path(root).resolve()
    if not (root / STATE_FILE).exists():
        if purge:
            _remove_runtime_files(root)
        return []
    info = load_stack(root)
    stopped = _terminate_in_order(info.processes, timeout, root)
    if purge:
        _remove_runtime_files(root)
    else:
        shutil.rmtree(root / "tmp", ignore_errors=True)
        _write_state(replace(info, stopped=True))
    return [ref.name for ref in stopped]


def _terminate_in_order(procs: dict[str, ProcessRef], timeout: float, root: Path) -> list[ProcessRef]:
    try:
        # Clients of Redis/osmem first, so they shut down cleanly.
        stopped = terminate([procs[n] for n in ("server", "worker") if n in procs], timeout)
        stopped += terminate([procs[n] for n in ("osmem", "redis") if n in procs], timeout)
    except RuntimeError as e:
        raise ArgillaStackError(f"stopping the stack under {root}: {e}") from e
    return stopped


def _remove_runtime_files(root: Path) -> None:
    for sub in ("tmp", "home", "redis"):
        shutil.rmtree(root / sub, ignore_errors=True)
    (root / STATE_FILE).unlink(missing_ok=True)
