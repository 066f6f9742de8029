"""tick()'s answer names the round the way operators do: by its number, not its database id."""

from __future__ import annotations

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
