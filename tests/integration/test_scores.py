"""A sample has, per reward model, either a reward score or a recorded reason it has none, never both: a
rescore that reads a once-unreadable answer (a larger [reward] max_length) clears its exclusion, and the
reverse drops the old score."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.db import UnitOfWork, make_engine
from storage.migrate import upgrade
from storage.models import Checkpoint, Generation, Prompt, RewardExclusion, RewardScore
from storage.repositories.scores import (
    reward_exclusion_counts,
    upsert_reward_exclusions,
    upsert_reward_scores,
)

RM, OTHER_RM = "rm-a", "rm-b"
WHY = "response longer than [reward] max_length=48 tokens even without its prompt"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def uow(request):
    engine = make_engine(request.getfixturevalue(f"{request.param}_url"))
    upgrade(engine)
    yield UnitOfWork(engine)
    engine.dispose()


def _generations(uow: UnitOfWork) -> list[int]:
    with uow() as s:
        s.add(Prompt(id="p" * 64, text="hi", source="test", split="train"))
        s.add(Checkpoint(id="c0", path="hub/c0"))
        s.flush()
        gens = [
            Generation(prompt_id="p" * 64, checkpoint_id="c0", sample_index=i, text=f"r{i}") for i in (0, 1)
        ]
        s.add_all(gens)
        s.flush()
        return [g.id for g in gens]


def _rows(uow: UnitOfWork, model, rm: str) -> int:
    with uow() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.reward_model == rm))


def test_a_scored_sample_loses_its_exclusion_and_an_excluded_one_its_score(uow):
    g0, g1 = _generations(uow)
    with uow() as s:
        upsert_reward_exclusions(s, RM, [(g0, WHY), (g1, WHY)])
        upsert_reward_exclusions(s, OTHER_RM, [(g0, WHY)])
    with uow() as s:  # rescored under a larger max_length: g0 is read whole now
        upsert_reward_scores(s, RM, [(g0, 1.5)])
    with uow() as s:
        assert reward_exclusion_counts(s, reward_model=RM) == [("c0", RM, WHY, 1)]
        assert reward_exclusion_counts(s, reward_model=OTHER_RM) == [("c0", OTHER_RM, WHY, 1)]  # its own
    assert _rows(uow, RewardScore, RM) == 1

    with uow() as s:  # and back under a smaller one: g0 unreadable again, its old score must not stay
        upsert_reward_exclusions(s, RM, [(g0, WHY)])
    assert _rows(uow, RewardScore, RM) == 0
    assert _rows(uow, RewardExclusion, RM) == 2
