"""Migration 0013 (labels.answered_at) on SQLite and PostgreSQL: pull's times of first answer are stored in it;
going back below it drops them, which `db downgrade` finds and refuses without --force."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.db import UnitOfWork, make_engine
from storage.downgrade import downgrade_loss
from storage.migrate import downgrade, upgrade
from storage.repositories.labels import LabelRow, add_label_versions, labels_of, shown_answers
from tests.support.annotation_setup import make_round_items

BEFORE = "0012_gold_items"
FIRST, EDITED = datetime(2026, 12, 7, 5, 0, tzinfo=UTC), datetime(2026, 12, 7, 5, 9, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request):
    eng = make_engine(request.getfixturevalue(f"{request.param}_url"))
    upgrade(eng)
    yield eng
    eng.dispose()


def test_answer_times_are_stored_read_and_counted_as_a_downgrade_loss(engine) -> None:
    uow = UnitOfWork(engine)
    items = make_round_items(uow, 2)
    first, second = items.item_ids
    with uow() as s:
        add_label_versions(
            s,
            [
                LabelRow(first, "alice", "a", None, EDITED, annotator_id="u1", answered_at=FIRST),
                LabelRow(second, "alice", "b", None, EDITED, annotator_id="u1"),  # pulled before 0013
            ],
        )
    with uow() as s:
        assert {k[0]: r.answered_at for k, r in labels_of(s).items()} == {first: FIRST, second: None}
        # Reliability reads the time of first answer, else the last edit's.
        assert {a.item_id: a.answered_at for a in shown_answers(s)} == {first: FIRST, second: EDITED}
        assert {a.item_id: a.swapped for a in shown_answers(s)} == items.swapped

    lost = {
        k: n for k, n in downgrade_loss(engine, BEFORE).columns.items() if n
    }  # later revisions' empty ones
    assert lost == {"labels.answered_at": 1}  # `db downgrade` needs --force
    downgrade(engine, BEFORE)
    upgrade(engine)
    with uow() as s:
        assert {r.answered_at for r in labels_of(s).values()} == {None}
