"""Column types on SQLite and a real PostgreSQL: statuses stored as the plain strings they always were, and
every datetime read back timezone-aware in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, select, text

from storage.db import UnitOfWork, make_engine
from storage.locks import acquire, holder_of
from storage.migrate import upgrade
from storage.models import AnnotationItem, Base, Checkpoint, Generation, Prompt, Round, SchedulerLock
from storage.statuses import ItemStatus, RoundStatus
from storage.types import UTCDateTime

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
        gens = [
            Generation(prompt_id="p" * 64, checkpoint_id="c0", sample_index=i, text=f"r{i}") for i in (0, 1)
        ]
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
    with pytest.raises(Exception, match="'finished' is not a valid RoundStatus"), any_uow() as s:
        s.get(Round, round_id).status = "finished"


def test_every_datetime_column_is_utc_aware():
    for table in Base.metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, DateTime | UTCDateTime):
                assert isinstance(column.type, UTCDateTime), f"{table.name}.{column.name}"
                assert column.type.impl.timezone, f"{table.name}.{column.name}"


def test_datetimes_read_back_aware_in_utc(any_uow):
    round_id, _ = _one_item(any_uow)
    plus_two = timezone(timedelta(hours=2))
    deadline = datetime(2030, 5, 1, 14, 30, tzinfo=plus_two)  # = 12:30 UTC
    with any_uow() as s:
        s.get(Round, round_id).deadline_at = deadline
    with any_uow() as s:
        rnd = s.get(Round, round_id)
        for value in (rnd.created_at, rnd.updated_at, rnd.deadline_at):
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        assert rnd.deadline_at == deadline and rnd.deadline_at.hour == 12
        assert datetime.now(UTC) - rnd.created_at < timedelta(minutes=5)  # aware - aware: no TypeError
        # Core reads (no ORM) are converted too
        row = s.execute(select(Round.finished_at, Round.deadline_at)).one()
        assert row.finished_at is None and row.deadline_at.tzinfo is not None


def test_a_naive_value_is_taken_as_utc(any_uow):
    round_id, _ = _one_item(any_uow)
    with any_uow() as s:
        s.get(Round, round_id).deadline_at = datetime(2030, 5, 1, 12, 30)
    with any_uow() as s:
        assert s.get(Round, round_id).deadline_at == datetime(2030, 5, 1, 12, 30, tzinfo=UTC)


def test_scheduler_lock_heartbeat_is_aware(any_uow):
    acquire(any_uow.engine, "scheduler", "me", stale_after=60)
    acquire(any_uow.engine, "scheduler", "me", stale_after=60)  # compare-and-swap on the read-back heartbeat
    assert holder_of(any_uow.engine, "scheduler") == "me"
    with any_uow() as s:
        lock = s.get(SchedulerLock, "scheduler")
        assert lock.heartbeat_at.tzinfo is not None and lock.acquired_at.tzinfo is not None


# What a tokenizer can decode and PostgreSQL refuses (psycopg.DataError on NUL, UnicodeEncodeError on a lone
# surrogate), SQLite keeps: stored as U+FFFD everywhere.
DIRTY = [("ok\x00then\x00", "ok\ufffdthen\ufffd"), ("lone \ud800 half", "lone \ufffd half")]


@pytest.mark.parametrize(("raw", "clean"), DIRTY, ids=["nul", "surrogate"])
def test_model_output_is_stored_cleaned_by_every_writer(any_uow, raw, clean):
    from storage.repositories.evaluations import add_evaluation, add_samples, evaluation_samples
    from storage.repositories.scores import add_generations

    _one_item(any_uow)
    with any_uow() as s:
        stored = add_generations(
            s, "c0", [{"prompt_id": "p" * 64, "sample_index": 5, "text": raw, "n_tokens": 3}]
        )
        assert stored["p" * 64][5].text == clean
        ev = add_evaluation(
            s, checkpoint_id="c0", reference_id="c0", judge="rule", n_prompts=1,
            win_rate=0.5, ci_low=0.0, ci_high=1.0, details={},
        )  # fmt: skip
        sample = {
            "prompt_id": "p" * 64,
            "sample_index": 0,
            "seed": 1,
            "text": raw,
            "n_tokens": 3,
            "score": 1.0,
        }
        add_samples(s, ev.id, [{**sample, "side": side} for side in ("policy", "reference")])
        ev_id = ev.id
    with any_uow() as s:
        assert [r.text for r in evaluation_samples(s, ev_id)] == [clean, clean]
        assert s.scalar(select(Generation.text).where(Generation.sample_index == 5)) == clean


def test_every_model_output_column_is_cleaned_on_write():
    from storage.models import EvalComparison, EvaluationSample
    from storage.types import ModelText

    outputs = [
        Generation.text,
        EvaluationSample.text,
        EvalComparison.policy_text,
        EvalComparison.reference_text,
    ]
    assert all(isinstance(c.type, ModelText) for c in outputs)
