"""Migration 0014 (annotator exclusions, counted decision links, decision method and confidence): up, down and
up again while nothing depends on it; the downgrade refuses once an exclusion is recorded (the older schema
cannot tell which answers did not count)."""

from __future__ import annotations

import pytest

from storage.db import UnitOfWork, make_engine
from storage.migrate import MigrationError, current_revision, downgrade, head_revision, upgrade
from storage.repositories.exclusions import add_exclusion, excluded_names

BEFORE = "0013_answer_times"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_downgrade_refuses_once_an_exclusion_is_recorded(backend, request) -> None:
    engine = make_engine(request.getfixturevalue(f"{backend}_url"))
    upgrade(engine)
    downgrade(engine, BEFORE)  # nothing recorded yet: nothing to lose
    assert current_revision(engine) == BEFORE
    upgrade(engine)
    with UnitOfWork(engine)() as s:
        add_exclusion(s, "careless", "alice", "always a")
    with pytest.raises(MigrationError, match="1 annotator exclusions"):
        downgrade(engine, BEFORE)
    assert current_revision(engine) == head_revision()
    with UnitOfWork(engine)() as s:
        assert excluded_names(s) == {"careless"}
    engine.dispose()
