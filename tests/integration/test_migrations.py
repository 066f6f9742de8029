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
