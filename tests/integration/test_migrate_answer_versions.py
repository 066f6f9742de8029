"""Migration 0010 (answer versions) on SQLite and PostgreSQL: the labels stored before it become version 1 of
their answer, linked to their item's decision; its downgrade keeps every answer and refuses where an answer has
more versions than the older schema can hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from storage.db import UnitOfWork, make_engine
from storage.migrate import MigrationError, current_revision, downgrade, head_revision, upgrade
from storage.repositories.labels import LabelRow, add_label_versions, label_choices, labels_of, legacy_key
from tests.support.annotation_setup import make_round_items

BEFORE = "0010_operator_commands"
ROWS = "SELECT item_id, annotator, choice, rationale FROM labels ORDER BY item_id, annotator"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request):
    eng = make_engine(request.getfixturevalue(f"{request.param}_url"))
    upgrade(eng, BEFORE)
    yield eng
    eng.dispose()


def _rows(engine) -> list[tuple]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(ROWS))]


def test_stored_labels_become_version_one_and_a_downgrade_keeps_or_refuses(engine) -> None:
    uow = UnitOfWork(engine)
    upgrade(engine)  # items are made at head (their ids are keyed with 0015's secret), then taken back
    items = make_round_items(uow, 2)  # rounds and items are the same before and after 0010
    downgrade(engine, BEFORE)
    when = datetime(2026, 12, 6, 21, 11, tzinfo=UTC)
    with engine.begin() as c:
        for item_id in items.item_ids:
            for who, choice in (("alice", "a"), ("bob", "b")):
                c.execute(
                    text(
                        "INSERT INTO labels (item_id, annotator, choice, rationale, submitted_at) "
                        "VALUES (:i, :w, :c, :r, :t)"
                    ),
                    {"i": item_id, "w": who, "c": choice, "r": f"{who} says {choice}", "t": when},
                )
    before = _rows(engine)

    upgrade(engine)
    with uow() as s:
        latest = labels_of(s)
        used = sorted(label_choices(s))
    assert sorted(latest) == sorted((i, legacy_key(w)) for i in items.item_ids for w in ("alice", "bob"))
    assert {(r.version, r.annotator_id) for r in latest.values()} == {(1, None)}
    assert used == sorted(
        (items.round_id, i, w, c) for i in items.item_ids for w, c in (("alice", "a"), ("bob", "b"))
    )

    downgrade(engine, BEFORE)  # one version per answer: nothing is lost going back
    assert _rows(engine) == before
    upgrade(engine)

    with uow() as s:  # alice changes her answer to the first item: version 2
        add_label_versions(s, [LabelRow(items.item_ids[0], "alice", "b", None, when, version=2)])
    with pytest.raises(MigrationError, match="1 answers have more than one stored version"):
        downgrade(engine, BEFORE)
    assert current_revision(engine) == head_revision()
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM labels")).scalar() == len(before) + 1
