"""Revision 0012 (gold items) against real SQLite: up, down and up again while empty; the downgrade refuses
while a gold item is stored (it would delete it), naming the tables that hold rows."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from storage.db import make_engine
from storage.migrate import MigrationError, current_revision, downgrade, head_revision, upgrade

BEFORE = "0011_answer_versions"
TABLES = {"gold_items", "gold_records", "gold_answers"}


def test_gold_tables_come_and_go_and_a_downgrade_refuses_to_drop_gold(sqlite_url) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    downgrade(engine, BEFORE)  # empty: nothing is lost
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gold_items (key, prompt, response_a, response_b, expected, source, created_at) "
                "VALUES ('k', 'Q?', 'x', 'y', 'a', 'g.jsonl', '2026-01-01')"
            )
        )
    with pytest.raises(MigrationError, match="refused: the database holds 1 gold_items"):
        downgrade(engine, BEFORE)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM gold_items")).scalar() == 1
    engine.dispose()


def test_a_downgrade_below_0016_refuses_while_a_gold_item_is_retired(sqlite_url) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    downgrade(engine, "0015_record_secret")  # nothing retired: nothing is lost
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gold_items (key, prompt, response_a, response_b, expected, source, created_at, "
                "retired_at) VALUES ('k', 'Q?', 'x', 'y', 'a', 'g.jsonl', '2026-01-01', '2026-01-02')"
            )
        )
    with pytest.raises(MigrationError, match="1 gold items are retired"):
        downgrade(engine, "0015_record_secret")
    assert current_revision(engine) == head_revision()
    engine.dispose()
