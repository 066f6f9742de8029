"""Plumbing of the local Argilla stack: prerequisites, process environment, commands, readiness probes.

Stdlib only; nothing here imports argilla_server (it lives in its own venv, see annotation/stack/argilla_engine.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Event

from annotation.stack.processes import ProcessRef, is_alive, spawn, tail
from storage.errors import PvarLoopError
from storage.private import write_private_text

ENGINE_NAME = "opensearch-noscript"  # registered by annotation/stack/argilla_engine.py
ENGINE_SCRIPT = Path(__file__).with_name("argilla_engine.py")
# Files created by stack processes: private to this user (Argilla's DB holds every user's API key).
PRIVATE_UMASK = 0o077
# How the owner's secrets reach the launcher's `create-owner` (the environment, never argv).
OWNER_PASSWORD_ENV, OWNER_API_KEY_ENV = "PVAR_LOOP_OWNER_PASSWORD", "PVAR_LOOP_OWNER_API_KEY"
VENV_ENV = "PVAR_LOOP_ARGILLA_VENV"
REDIS_ENV = "PVAR_LOOP_REDIS_SERVER"
INSTALL_HINT = (
    "python3.11 -m venv {venv} && {venv}/bin/pip install -r requirements/argilla-server.lock.txt "
    "(or: argilla-server==2.8.0 osmem-server==0.1.6 'click<8.2' 'huggingface-hub<1' 'datasets<4')"
)


class ArgillaStackError(PvarLoopError, RuntimeError):
    """The local Argilla stack could not be started, reached or stopped."""


class PortTakenError(ArgillaStackError):
    """The port asked for the Argilla server is in use (`port` says which)."""

    def __init__(self, message: str, port: int) -> None:
        super().__init__(message)
        self.port = port


class ArgillaPrerequisiteError(ArgillaStackError):
    """Something the stack needs (server venv, redis-server, osmem binary) is not installed."""


def argilla_venv() -> Path:
    """The Argilla server venv: $PVAR_LOOP_ARGILLA_VENV, else <repo>/.venv-argilla."""
    configured = os.environ.get(VENV_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / ".venv-argilla"


def prerequisites(venv: Path) -> tuple[Path, str, str]:
    """(venv python, redis-server, osmem binary), or a clear error saying how to install what is missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise ArgillaPrerequisiteError(
            f"Argilla server venv not found at {venv} (set ${VENV_ENV} or create it: "
            f"{INSTALL_HINT.format(venv=venv)})"
        )
    redis = shutil.which(os.environ.get(REDIS_ENV) or "redis-server")
    if not redis:
        raise ArgillaPrerequisiteError(
            f"redis-server not found ({os.environ.get(REDIS_ENV) or 'not on PATH'}); install it "
            f"(apt-get install redis-server) or point ${REDIS_ENV} at the binary"
        )
    probe = (
        "import importlib.util, osmem_server\n"
        "assert importlib.util.find_spec('argilla_server'), 'argilla_server is not installed'\n"
        "print(osmem_server.resolve_binary())"
    )
    done = subprocess.run([str(python), "-P", "-c", probe], capture_output=True, text=True, timeout=60)
    osmem = done.stdout.strip()
    if done.returncode != 0 or not Path(osmem).is_file():
        raise ArgillaPrerequisiteError(
            f"{venv} lacks argilla-server or the osmem binary ({done.stderr.strip()[-300:] or osmem}); "
            f"install: {INSTALL_HINT.format(venv=venv)}"
        )
    return python, redis, osmem


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_port_free(port: int) -> None:
    """Refuse a port something listens on. SO_REUSEADDR as the servers themselves bind: a port the stack's
    own server left in TIME_WAIT a moment ago is free for its restart."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise PortTakenError(f"port {port} for the Argilla server is not free: {e}", port) from e


def service_env(
    root: Path, venv: Path, ports: dict[str, int], auth_secret: str, redis_password: str
) -> dict[str, str]:
    """Environment of every stack process: Argilla settings, offline HF, TMPDIR inside root.

    A fixed ARGILLA_AUTH_SECRET_KEY keeps UI sign-ins valid across server restarts (default: random). Secrets
    travel in the environment (readable only by this user), never on a command line.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARGILLA_", "PYTHON", "VIRTUAL_ENV", "TMP", "TEMP"))
    }
    tmp = str(root / "tmp")
    db = root / "home" / "argilla.db"
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PYTHONUNBUFFERED="1",
        TMPDIR=tmp,
        TMP=tmp,
        TEMP=tmp,
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        ARGILLA_HOME_PATH=str(root / "home"),
        ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{db}?check_same_thread=False",
        ARGILLA_DATABASE_SQLITE_TIMEOUT="30",
        ARGILLA_REDIS_URL=f"redis://:{redis_password}@127.0.0.1:{ports['redis']}/0",
        ARGILLA_ELASTICSEARCH=f"http://127.0.0.1:{ports['osmem']}",
        ARGILLA_SEARCH_ENGINE=ENGINE_NAME,
        ARGILLA_AUTH_SECRET_KEY=auth_secret,
    )
    return env


def http_status(url: str, headers: dict[str, str] | None = None) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def redis_answers(port: int, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            return s.recv(32) == b"+OK\r\n+PONG\r\n"
    except OSError:
        return False


def api_answers(url: str, api_key: str) -> bool:
    """True when the Argilla API authenticates `api_key` (GET /api/v1/me)."""
    return http_status(f"{url}/api/v1/me", {"X-Argilla-Api-Key": api_key}) == 200


def wait_until(
    what: str,
    check: Callable[[], bool],
    ref: ProcessRef,
    log: Path,
    timeout: float,
    cancel: Event | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not is_alive(ref):
            raise ArgillaStackError(f"{what} (pid {ref.pid}) died while starting; {log}:\n{tail(log)}")
        raise_if_cancelled(cancel)
        time.sleep(0.1)
    raise ArgillaStackError(f"{what} did not answer within {timeout:.0f} s; {log}:\n{tail(log)}")


class StackStartCancelled(ArgillaStackError):
    """The `cancel` event given to start_stack was set: what it had started is stopped."""


def raise_if_cancelled(cancel: Event | None) -> None:
    """A start run beside other work (the demo's) stops when that work fails: set `cancel` to stop it here."""
    if cancel is not None and cancel.is_set():
        raise StackStartCancelled("the stack's start was cancelled")


def wait_for_api(
    url: str, api_key: str, ref: ProcessRef, log: Path, timeout: float, cancel: Event | None = None
) -> None:
    """Until the server process `ref` authenticates `api_key`; fails fast if it dies."""
    wait_until("argilla server", lambda: api_answers(url, api_key), ref, log, timeout, cancel)


def run_cli(name: str, python: Path, args: list[str], env: dict[str, str], root: Path) -> None:
    """One Argilla CLI command (each imports the whole app, ~4 s); output to logs/<name>.log."""
    cmd = [str(python), "-P", "-m", "argilla_server", *args]
    _run_set_up_command(name, cmd, env, root, f"argilla_server {args[0]} {args[1]}")


def spawn_server(root: Path, python: Path, env: dict[str, str], port: int) -> ProcessRef:
    """The Argilla API + UI, through the launcher that registers the script-free engine first."""
    cmd = [str(python), "-P", str(ENGINE_SCRIPT), "server", "--host", "127.0.0.1", "--port", str(port)]
    return spawn("server", cmd, env=env, cwd=root, log_path=root / "logs" / "server.log")


def spawn_worker(root: Path, python: Path, env: dict[str, str]) -> ProcessRef:
    """Argilla's background-job (rq) worker, with the same engine registration."""
    cmd = [str(python), "-P", str(ENGINE_SCRIPT), "worker"]
    return spawn("worker", cmd, env=env, cwd=root, log_path=root / "logs" / "worker.log")


def spawn_redis(root: Path, binary: str, env: dict[str, str], port: int, password: str) -> ProcessRef:
    """Redis for Argilla's job queue; no persistence (queued jobs are short-lived; the data is in the DB).

    Argilla's worker unpickles the jobs it finds in Redis, so Redis requires a password; it is in a config
    file only this user can read (a `--requirepass` argument would show in `ps`)."""
    conf = root / "redis" / "redis.conf"
    write_private_text(conf, f"requirepass {password}\n")
    cmd = [binary, str(conf), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    cmd += ["--dir", str(root / "redis")]
    return spawn("redis", cmd, env=env, cwd=root, log_path=root / "logs" / "redis.log")


def spawn_osmem(root: Path, binary: str, env: dict[str, str], port: int) -> ProcessRef:
    """The in-memory OpenSearch emulator; --no-stdin-watch keeps it alive after its parent exits.

    osmem has no authentication option: it listens on the loopback interface only (production deployments use
    Elasticsearch with its own security, deploy/argilla-compose.yaml)."""
    cmd = [binary, "--addr", f"127.0.0.1:{port}", "--no-stdin-watch", "--no-ja"]
    return spawn("osmem", cmd, env=env, cwd=root, log_path=root / "logs" / "osmem.log")


@dataclass(frozen=True)
class OwnerAccount:
    """The stack's owner user, member of the project's workspace."""

    username: str
    password: str
    api_key: str
    workspace: str


def create_owner(python: Path, env: dict[str, str], root: Path, owner: OwnerAccount) -> None:
    """The owner user and the workspace, created by the launcher from secrets passed in its environment (the
    stock `argilla_server database users create` wants them as arguments, and prints the API key)."""
    secrets_env = {OWNER_PASSWORD_ENV: owner.password, OWNER_API_KEY_ENV: owner.api_key}
    args = ["create-owner", "--username", owner.username, "--workspace", owner.workspace]
    run_launcher("create-owner", python, args, {**env, **secrets_env}, root)


def reindex(python: Path, env: dict[str, str], root: Path) -> None:
    """Rebuild the in-memory search index from Argilla's database, through the launcher so the script-free
    engine is the one Argilla's Reindexer writes with (a restarted osmem starts empty)."""
    run_launcher("reindex", python, ["reindex"], env, root)


def run_launcher(name: str, python: Path, args: list[str], env: dict[str, str], root: Path) -> None:
    """One command of annotation/stack/argilla_engine.py, output to logs/<name>.log."""
    cmd = [str(python), "-P", str(ENGINE_SCRIPT), *args]
    _run_set_up_command(name, cmd, env, root, f"argilla_engine.py {name}")


def _run_set_up_command(name: str, cmd: list[str], env: dict[str, str], root: Path, what: str) -> None:
    """Run a set-up command to completion, output to logs/<name>.log. Each Argilla process copies Argilla's UI
    into its temp dir: give it a private one and delete it right after."""
    log = root / "logs" / f"{name}.log"
    tmp = root / "tmp" / f"cli-{name}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        with open_private_log(log) as out:
            code = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp)},
                cwd=root,
                timeout=300,
                umask=PRIVATE_UMASK,
            ).returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if code != 0:
        raise ArgillaStackError(f"`{what}` failed ({code}); {log}:\n{tail(log)}")


def prepare_root(root: Path) -> None:
    """The stack directory and its parts, private to this user: they hold Argilla's database (every user's API
    key), the owner's credentials and the Redis password."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    for sub in ("logs", "home", "tmp", "redis"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
        (root / sub).chmod(0o700)


def open_private_log(path: Path):
    """Open a log for appending, created 0600 (logs may quote Argilla's output)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
