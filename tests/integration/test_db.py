"""A database the CLI cannot use is one line on stderr and exit 2, never a traceback, and nothing is written:
a schema from a newer pvar-loop, a corrupt SQLite file, a malformed URL, an unsupported driver, an unreachable
PostgreSQL server, a read-only data directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from storage.db import make_engine
from storage.migrate import current_revision, head_revision, upgrade
from tests.fixtures.database import free_port

# As root, permission bits are not enforced; without these capabilities they are (the owner's bits apply).
DROP_ROOT_OVERRIDES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None, unprivileged: bool = False):
    base = {k: v for k, v in os.environ.items() if not k.startswith("PVAR_LOOP_")}
    prefix = DROP_ROOT_OVERRIDES if unprivileged and os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "loop.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
    )


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    """The single `error:` line of a run that exited 2 without a traceback."""
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    assert r.stderr.strip().endswith(errors[0]), r.stderr  # nothing follows the message
    return errors[0]


def _set_revision(url: str, revision: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{revision}'")
    engine.dispose()


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_database_from_a_newer_pvar_loop_is_named_as_such(backend, tmp_path, request):
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    _set_revision(url, "9999_from_the_future")
    env = {"PVAR_LOOP_DATABASE_URL": url}

    for command in (["status"], ["db", "upgrade"], ["db", "downgrade", "base"]):
        msg = _one_line_error(_cli(*command, cwd=tmp_path, env=env))
        assert "9999_from_the_future" in msg and "newer" in msg, msg
        assert "run `pvar-loop db upgrade`" not in msg, msg
    assert _revision(url) == "9999_from_the_future"  # untouched

    r = _cli("db", "current", cwd=tmp_path, env=env)
    assert r.returncode == 0 and "9999_from_the_future" in r.stdout and "newer" in r.stdout, r.stdout


@pytest.mark.parametrize("command", [["status"], ["db", "upgrade"], ["db", "current"]])
def test_corrupt_sqlite_file(command, tmp_path):
    db = tmp_path / "pvar-loop.db"
    garbage = b"this is not a SQLite database, just some bytes that happen to be here " * 64
    db.write_bytes(garbage)
    msg = _one_line_error(_cli(*command, cwd=tmp_path, env={"PVAR_LOOP_DATA_DIR": str(tmp_path)}))
    assert str(db) in msg and "not a SQLite database" in msg, msg
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pvar-loop.db"]


def test_truncated_sqlite_file(tmp_path):
    db = tmp_path / "pvar-loop.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    db.write_bytes(db.read_bytes()[: 3 * 4096])  # a valid header, most pages gone
    msg = _one_line_error(_cli("status", cwd=tmp_path, env={"PVAR_LOOP_DATA_DIR": str(tmp_path)}))
    assert str(db) in msg and "corrupt" in msg, msg


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql://pvar:s3cret@localhost:notaport/db",
        "sqlite//missing-colon.db",
    ],
)
def test_malformed_database_url_names_the_key(url, tmp_path):
    config = tmp_path / "pvar-loop.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    msg = _one_line_error(_cli("--config", str(config), "status", cwd=tmp_path))
    assert "[database] url" in msg and "malformed" in msg, msg
    assert "s3cret" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pvar-loop.toml"]


@pytest.mark.parametrize(
    "url",
    ["mysql://pvar:s3cret@localhost/db", "oracle+nodriver://localhost/db", "postgresql+psycopg2://h/db"],
)
def test_unsupported_database_driver(url, tmp_path):
    msg = _one_line_error(_cli("status", cwd=tmp_path, env={"PVAR_LOOP_DATABASE_URL": url}))
    assert "[database] url" in msg and "unsupported" in msg and "postgresql" in msg, msg
    assert "s3cret" not in msg


def test_unreachable_postgres(tmp_path):
    url = f"postgresql://pvar:s3cret@127.0.0.1:{free_port()}/pvar"
    for command in (["status"], ["db", "upgrade"]):
        msg = _one_line_error(_cli(*command, cwd=tmp_path, env={"PVAR_LOOP_DATABASE_URL": url}))
        assert "cannot connect" in msg and "127.0.0.1" in msg and "s3cret" not in msg, msg


@pytest.mark.skipif(shutil.which("setpriv") is None and os.geteuid() == 0, reason="needs setpriv as root")
def test_read_only_data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'pvar-loop.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    before = sorted(p.name for p in data.iterdir())
    data.chmod(0o555)
    try:
        env = {"PVAR_LOOP_DATA_DIR": str(data)}
        for command in (["status"], ["db", "upgrade"]):
            msg = _one_line_error(_cli(*command, cwd=tmp_path, env=env, unprivileged=True))
            assert str(data) in msg and "read-only" in msg, msg
        assert sorted(p.name for p in data.iterdir()) == before

        # a data directory that cannot be created
        env = {"PVAR_LOOP_DATA_DIR": str(data / "sub")}
        msg = _one_line_error(_cli("db", "upgrade", cwd=tmp_path, env=env, unprivileged=True))
        assert str(data / "sub") in msg and "[paths] data_dir" in msg, msg
        config = tmp_path / "pvar-loop.toml"
        config.write_text(f'[paths]\ndata_dir = "{data / "sub"}"\n')
        msg = _one_line_error(_cli("--config", str(config), "init", cwd=tmp_path, unprivileged=True))
        assert str(data / "sub") in msg and "[paths] data_dir" in msg, msg
        assert not (data / "sub").exists()
    finally:
        data.chmod(0o755)
    assert _revision(url) == head_revision()
