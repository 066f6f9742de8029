"""Migrations go up, down and up again on SQLite and a real PostgreSQL; the models match the revisions."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import make_engine
from storage.migrate import (
    DatabaseNotAtHead,
    current_revision,
    downgrade,
    ensure_at_head,
    head_revision,
    upgrade,
)
from storage.models import Base

OUR_TABLES = set(Base.metadata.tables)


def _round_trip(url: str) -> None:
    engine = make_engine(url)
    with pytest.raises(DatabaseNotAtHead, match="pvar-loop init"):
        ensure_at_head(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) >= OUR_TABLES
    ensure_at_head(engine)

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": lambda o, n, t, r, c: n != "apscheduler_jobs"}
        )
        assert compare_metadata(ctx, Base.metadata) == []

    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert not OUR_TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_sqlite_up_down_up(sqlite_url):
    _round_trip(sqlite_url)


@pytest.mark.postgres
def test_postgres_up_down_up(postgres_url):
    _round_trip(postgres_url)


def test_refuses_database_at_an_unknown_revision_as_newer(sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'zz99'")
    with pytest.raises(DatabaseNotAtHead, match="revision zz99, which is newer than this pvar-loop"):
        ensure_at_head(engine)
    for migrate in (upgrade, lambda e: downgrade(e, "base")):
        with pytest.raises(DatabaseNotAtHead, match="newer"):
            migrate(engine)
    assert current_revision(engine) == "zz99"


def _evaluation_samples_round_trip(url: str) -> None:
    """0004 on a database with an evaluation: the evaluation keeps its means (no key, no rows); samples can
    be written; downgrading drops them and the new columns, upgrading again restores an empty table."""
    engine = make_engine(url)
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO checkpoints (id, path, label_count, created_at) VALUES ('c', 'p', 0, '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO prompts (id, text, source, split, metadata, created_at) "
            "VALUES ('q', 'Q?', 't', 'eval', '{}', '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO evaluations (id, checkpoint_id, reference_id, judge, n_prompts, win_rate, ci_low, "
            "ci_high, details, created_at) VALUES (1, 'c', 'c', 'verifier', 1, 0.5, 0.5, 0.5, "
            "'{\"policy_mean\": 0.25}', '2026-01-01')"
        )
    upgrade(engine)
    with engine.begin() as conn:
        row = conn.exec_driver_sql(
            "SELECT win_rate, reference_key, reference_samples_id FROM evaluations WHERE id = 1"
        ).one()
        assert tuple(row) == (0.5, None, None)
        conn.exec_driver_sql(
            "INSERT INTO evaluation_samples (evaluation_id, prompt_id, side, sample_index, seed, text, "
            "n_tokens, score) VALUES (1, 'q', 'policy', 0, 9223372036854775807, 'a', 1, 0.5)"
        )
    with pytest.raises(Exception, match="(?i)check|constraint"), engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO evaluation_samples (evaluation_id, prompt_id, side, sample_index, seed, text, "
            "n_tokens, score) VALUES (1, 'q', 'judge', 0, 1, 'a', 1, 0.5)"
        )
    downgrade(engine, "0003")
    assert "evaluation_samples" not in inspect(engine).get_table_names()
    assert "reference_key" not in {c["name"] for c in inspect(engine).get_columns("evaluations")}
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT win_rate FROM evaluations WHERE id = 1").scalar() == 0.5
    upgrade(engine)
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM evaluation_samples").scalar() == 0
    engine.dispose()


def test_sqlite_evaluation_samples_up_down_up(sqlite_url):
    _evaluation_samples_round_trip(sqlite_url)


@pytest.mark.postgres
def test_postgres_evaluation_samples_up_down_up(postgres_url):
    _evaluation_samples_round_trip(postgres_url)


def test_every_revision_docstring_names_the_revision_it_revises() -> None:
    """The "Revises:" line a reader sees is the down_revision alembic follows."""
    import re
    from pathlib import Path

    versions = Path(__file__).resolve().parents[2] / "alembic" / "versions"
    wrong = []
    for path in sorted(versions.glob("0*.py")):
        text = path.read_text(encoding="utf-8")
        said = re.search(r"^Revises: ?(\S*)", text, re.M)
        down = re.search(r'^down_revision: [^=]*= "?([^"\n]*)"?$', text, re.M)
        expected = "(none)" if down and down.group(1) == "None" else down and down.group(1)
        if said is None or said.group(1) != expected:
            wrong.append(f"{path.name}: says {said and said.group(1)!r}, revises {expected!r}")
    assert wrong == []
