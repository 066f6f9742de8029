"""Column types on SQLite and a real PostgreSQL: statuses stored as the plain strings they always were."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from storage.db import UnitOfWork, make_engine
from storage.migrate import upgrade
from storage.models import AnnotationItem, Checkpoint, Generation, Prompt, Round
from storage.statuses import ItemStatus, RoundStatus

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def any_uow(request):
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    yield UnitOfWork(engine)
    engine.dispose()


def _one_item(uow: UnitOfWork) -> tuple[int, str]:
    with uow() as s:
        s.add(Prompt(id="p" * 64, text="hi", source="test", split="train"))
        s.add(Checkpoint(id="c0", path="hub/c0"))
        s.flush()
        gens = [Generation(prompt_id="p" * 64, checkpoint_id="c0", sample_index=i, text=f"r{i}") for i in (0, 1)]
        rnd = Round(number=1, budget=1, strategy="pvar", policy_in="c0")
        s.add_all([*gens, rnd])
        s.flush()
        s.add(
            AnnotationItem(
                id="i" * 64,
                round_id=rnd.id,
                prompt_id="p" * 64,
                generation_a_id=gens[0].id,
                generation_b_id=gens[1].id,
            )
        )
        return rnd.id, "i" * 64


def test_statuses_written_before_the_enums_read_back_as_members(any_uow):
    round_id, item_id = _one_item(any_uow)
    for raw in [s.value for s in RoundStatus]:
        with any_uow() as s:  # a row as an older version wrote it: a bare string
            s.execute(text("UPDATE rounds SET status = :v WHERE id = :i"), {"v": raw, "i": round_id})
        with any_uow() as s:
            status = s.scalar(select(Round.status).where(Round.id == round_id))
            assert status is RoundStatus(raw)
            assert s.scalar(select(Round.id).where(Round.status == raw)) == round_id
    for raw in [s.value for s in ItemStatus]:
        with any_uow() as s:
            s.execute(text("UPDATE annotation_items SET status = :v WHERE id = :i"), {"v": raw, "i": item_id})
        with any_uow() as s:
            assert s.get(AnnotationItem, item_id).status is ItemStatus(raw)


def test_enum_members_are_stored_as_their_plain_strings(any_uow):
    round_id, item_id = _one_item(any_uow)
    with any_uow() as s:
        assert s.get(Round, round_id).status is RoundStatus.PLANNED  # the column default
        assert s.get(AnnotationItem, item_id).status is ItemStatus.PENDING
        s.get(Round, round_id).status = RoundStatus.COLLECTING
        s.get(AnnotationItem, item_id).status = ItemStatus.UNDECIDED
    with any_uow() as s:
        assert s.execute(text("SELECT status FROM rounds")).scalar_one() == "collecting"
        assert s.execute(text("SELECT status FROM annotation_items")).scalar_one() == "undecided"


def test_an_unknown_status_is_refused_on_write(any_uow):
    round_id, _ = _one_item(any_uow)
    with pytest.raises(Exception, match="'finished' is not a valid RoundStatus"):
        with any_uow() as s:
            s.get(Round, round_id).status = "finished"
