"""Issue 11 point 12: the local Argilla stack keeps its secrets secret. The stack directory and every file in
it are private to the user (0700/0600), the owner's API key and password appear in no log and on no process
command line, and Redis (which hands pickled jobs to Argilla's worker) refuses clients without its password."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from annotation.stack.local_stack import load_stack

pytestmark = pytest.mark.argilla


def _local(argilla_stack):
    if argilla_stack.local is None:
        pytest.skip("an externally managed Argilla: its files and processes are not ours to check")
    return load_stack(argilla_stack.root)


def test_stack_directory_and_secret_files_are_private(argilla_stack):
    """The 0700 root shuts out everyone else (Argilla's own UI copy keeps the modes of its public sources);
    the files holding secrets are 0600 on top of that."""
    info = _local(argilla_stack)
    assert stat.S_IMODE(info.root.stat().st_mode) == 0o700
    secret_files = [
        info.root / "stack.json",  # owner key and password, Redis password
        info.root / "home" / "argilla.db",  # every Argilla user's API key
        info.root / "redis" / "redis.conf",  # requirepass
        *(info.root / "logs").iterdir(),
    ]
    modes = {str(p.relative_to(info.root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in secret_files}
    assert modes == dict.fromkeys(modes, "0o600")


def test_no_secret_in_logs_or_command_lines(argilla_stack):
    info = _local(argilla_stack)
    secrets_ = [info.api_key, info.password, info.redis_password]
    leaked = [
        str(p)
        for p in (info.root / "logs").iterdir()
        if any(s in p.read_text(errors="replace") for s in secrets_)
    ]
    assert leaked == []
    for ref in info.processes.values():
        cmdline = Path(f"/proc/{ref.pid}/cmdline").read_bytes().decode(errors="replace")
        assert not any(s in cmdline for s in secrets_), ref.name


def _redis(port: int, *commands: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"".join(commands))
        return s.recv(256)


def test_redis_requires_the_password(argilla_stack):
    info = _local(argilla_stack)
    port = info.ports["redis"]
    assert _redis(port, b"PING\r\n").startswith(b"-NOAUTH")
    reply = _redis(port, f"AUTH {info.redis_password}\r\n".encode(), b"PING\r\n")
    assert reply == b"+OK\r\n+PONG\r\n"


def test_an_existing_stack_directory_is_made_private(tmp_path):
    """`argilla up` under <data_dir>/argilla: a directory created earlier with the default mode becomes 0700."""
    from annotation.stack.services import prepare_root

    root = tmp_path / "argilla"
    root.mkdir()
    (root / "logs").mkdir()
    root.chmod(0o755)
    (root / "logs").chmod(0o755)
    prepare_root(root)
    for path in (root, *(p for p in root.iterdir() if p.is_dir())):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
