"""`pvar-loop db downgrade` that would drop data says what (counts per table and column), refuses without
--force and, on SQLite, writes a backup before it goes ahead; what it found out left the database untouched."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from storage.db import make_engine
from storage.downgrade import downgrade_loss
from storage.migrate import current_revision, head_revision, upgrade


def _cli(*args: str, cwd: Path, url: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVAR_LOOP_")}
    return subprocess.run(
        [sys.executable, "-m", "loop.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**env, "PVAR_LOOP_DATABASE_URL": url},
        timeout=120,
    )


def _with_prompts(url: str, n: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        for i in range(n):
            conn.exec_driver_sql(
                "INSERT INTO prompts (id, text, source, split, metadata, created_at) "
                f"VALUES ('p{i}', 'Q{i}?', 't', 'train', '{{}}', '2026-01-01')"
            )
    engine.dispose()


def _state(url: str) -> tuple[str | None, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return current_revision(engine), conn.exec_driver_sql("SELECT count(*) FROM prompts").scalar_one()
    finally:
        engine.dispose()


def test_a_downgrade_that_drops_rows_needs_force_and_writes_a_backup(sqlite_url, tmp_path):
    _with_prompts(sqlite_url, 3)
    r = _cli("db", "downgrade", "base", cwd=tmp_path, url=sqlite_url)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: downgrading to base drops table prompts (3 rows)"), r.stderr
    assert "--force" in r.stderr and "backup" in r.stderr
    assert _state(sqlite_url) == (head_revision(), 3)  # untouched
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    assert [
        p.name for p in db.parent.iterdir() if p.name.startswith(".downgrade")
    ] == []  # dry run cleaned up

    r = _cli("db", "downgrade", "base", "--force", cwd=tmp_path, url=sqlite_url)
    assert r.returncode == 0, r.stderr
    assert "dropped table prompts (3 rows)" in r.stdout
    [backup] = db.parent.glob(f"{db.name}.{head_revision()}-*.bak")
    assert f"backup written: {backup}" in r.stdout and backup.stat().st_mode & 0o777 == 0o600
    engine = make_engine(sqlite_url)
    assert current_revision(engine) is None
    engine.dispose()
    assert sqlite3.connect(backup).execute("SELECT count(*) FROM prompts").fetchone() == (3,)


def test_a_downgrade_dropping_nothing_needs_no_force(sqlite_url, tmp_path):
    _with_prompts(sqlite_url, 0)
    r = _cli("db", "downgrade", "0008", cwd=tmp_path, url=sqlite_url)
    assert r.returncode == 0 and "current revision: 0008" in r.stdout, r.stderr


@pytest.mark.postgres
def test_postgres_dry_run_counts_dropped_columns_and_rolls_back(postgres_url):
    _with_prompts(postgres_url, 2)
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO checkpoints (id, path, label_count, created_at) VALUES ('c', 'p', 0, now())"
        )
        conn.exec_driver_sql("INSERT INTO rounds (arm, number, budget, strategy, seed, policy_in, status, min_submitted, "
                             "created_at, updated_at) VALUES ('main', 1, 1, 'pvar', 0, 'c', 'planned', 2, now(), now())")  # fmt: skip
    loss = downgrade_loss(engine, "0001")
    assert (
        loss.columns["rounds.min_submitted"] == 1
        and "column rounds.min_submitted (1 values)" in loss.describe()
    )
    assert "prompts" not in loss.tables  # 0001 keeps it
    assert loss.tables.get("evaluation_samples") == 0  # dropped but empty
    engine.dispose()
    assert _state(postgres_url) == (head_revision(), 2)
