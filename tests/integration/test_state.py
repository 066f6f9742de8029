"""tick()'s answer names the round the way operators do: by its number, not its database id."""

from __future__ import annotations

import pytest

from loop.config import parse_config
from loop.rounds.state import Services, tick
from storage.models import Round
from storage.statuses import PRODUCTION_ARM, RoundStatus


def test_tick_names_the_round_number_not_its_id(uow):
    def nothing(*_args):
        return None

    with uow() as s:  # an experiment arm's round takes id 1; the main arm's round 1 gets id 2
        s.add(Round(arm="random-s0", number=1, status=RoundStatus.DONE, budget=4, strategy="random"))
        s.flush()
        s.add(Round(arm=PRODUCTION_ARM, number=1, status=RoundStatus.COLLECTING, budget=4, strategy="pvar"))
    services = Services(score=nothing, push=nothing, pull=nothing, train=nothing, evaluate=nothing)
    assert tick(uow, parse_config({}, env={}), services) == "round 1: collecting"


class _Drew(Exception):
    """The stub scoring service stops the step once it has the round's candidates."""


def test_an_exhausted_pool_is_said_once_and_drawn_again_when_prompts_arrive(uow, tmp_path, caplog):
    from loop.ingest import ingest_file
    from loop.rounds.candidates import POOL_EXHAUSTED, candidate_prompt_ids
    from storage.repositories.candidates import round_scoring

    cfg = parse_config({"selection": {"budget": 2, "candidates": 4}}, env={})
    drawn: list[list[str] | None] = []

    def score(cfg, uow, _checkpoint, round_id):
        drawn.append(candidate_prompt_ids(cfg, uow, round_id))
        raise _Drew

    def nothing(*_args):
        return None

    services = Services(score=score, push=nothing, pull=nothing, train=nothing, evaluate=nothing)
    caplog.set_level("DEBUG")
    for _ in range(5):
        assert tick(uow, cfg, services) == "round 1: planned"
    said = [r for r in caplog.records if r.levelname != "DEBUG"]
    assert [r.getMessage() for r in said if r.levelname in ("WARNING", "ERROR")] == [
        f"round main/1: {POOL_EXHAUSTED}"
    ]
    assert not any(r.exc_info for r in said) and drawn == []
    with uow() as s:
        assert s.get(Round, 1).reason == POOL_EXHAUSTED

    (tmp_path / "p.jsonl").write_text("".join(f'{{"prompt": "q{i}"}}\n' for i in range(6)))
    with uow() as s:
        ingest_file(s, tmp_path / "p.jsonl", split="train", max_chars=1000, skip_invalid=False)
    with pytest.raises(_Drew):
        tick(uow, cfg, services)
    assert len(drawn) == 1 and len(drawn[0]) == 4
    with uow() as s:
        assert round_scoring(s, 1).drawn == 4


def test_an_empty_draw_recorded_before_is_drawn_again(uow, tmp_path):
    """A round wedged by an older version (its empty draw read back for ever) draws once prompts exist."""
    from loop.ingest import ingest_file
    from loop.rounds.candidates import candidate_prompt_ids
    from storage.repositories.candidates import record_candidates

    cfg = parse_config({"selection": {"budget": 2, "candidates": 4}}, env={})
    with uow() as s:
        s.add(Round(arm=PRODUCTION_ARM, number=1, status=RoundStatus.PLANNED, budget=2, strategy="pvar"))
        s.flush()
        record_candidates(s, 1, asked=4, free_pool=0, prompt_ids=[])
    (tmp_path / "p.jsonl").write_text("".join(f'{{"prompt": "q{i}"}}\n' for i in range(6)))
    with uow() as s:
        ingest_file(s, tmp_path / "p.jsonl", split="train", max_chars=1000, skip_invalid=False)
    first = candidate_prompt_ids(cfg, uow, 1)
    assert len(first) == 4 and candidate_prompt_ids(cfg, uow, 1) == first  # drawn once, then read back
