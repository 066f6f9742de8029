"""Revision 0015 (project_secrets): upgrade draws a random 64-hex secret per database, kept across upgrades;
a downgrade drops only the secret (stored rows keep their ids, so it is no data loss) and a later upgrade draws
a new one; on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import inspect, text

from storage.db import UnitOfWork, make_engine
from storage.downgrade import downgrade_loss
from storage.migrate import current_revision, downgrade, upgrade
from storage.repositories.project_secrets import record_secret
from tests.support.annotation_setup import make_round_items

BEFORE = "0014_annotator_exclusions"


def _secret(engine) -> str:
    with UnitOfWork(engine)() as s:
        return record_secret(s)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_each_database_draws_its_own_secret_and_a_downgrade_drops_only_it(backend, request, tmp_path) -> None:
    engine = make_engine(request.getfixturevalue(f"{backend}_url"))
    upgrade(engine)
    first = _secret(engine)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    upgrade(engine)  # at head: nothing drawn again
    assert _secret(engine) == first
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    assert _secret(other) != first  # per project, not a constant of the code
    other.dispose()

    items = make_round_items(UnitOfWork(engine), 2)  # ids keyed with the secret
    assert not downgrade_loss(engine, BEFORE)  # the secret is a key, not data: no --force needed
    with engine.begin() as conn:  # a round's gold count fixed at its first push is data
        conn.execute(text("UPDATE rounds SET gold_per_round = 2"))
    assert {c: n for c, n in downgrade_loss(engine, BEFORE).columns.items() if n} == {
        "rounds.gold_per_round": 1
    }
    downgrade(engine, BEFORE)
    assert current_revision(engine) == BEFORE and "project_secrets" not in inspect(engine).get_table_names()
    with engine.connect() as conn:  # stored rows keep their ids
        assert sorted(conn.execute(text("SELECT id FROM annotation_items")).scalars()) == items.item_ids
    upgrade(engine)  # a new secret for the ids made from now on
    assert _secret(engine) != first
    engine.dispose()
