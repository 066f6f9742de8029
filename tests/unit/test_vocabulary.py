"""The status and strategy enums are the strings the database already holds, with their groups defined once."""

from __future__ import annotations

import pytest

from loop.acquisition.strategies import STRATEGIES, Strategy
from loop.config import ConfigError, parse_config
from loop.rounds.operator_settings import OperatorError, parse_strategy
from storage.statuses import ItemStatus, RoundStatus

# Exactly the values stored before the enums existed: changing one would orphan existing rows.
STORED_ROUND_STATUSES = [
    "planned",
    "scored",
    "pushed",
    "collecting",
    "training",
    "evaluating",
    "evaluated",
    "done",
    "cancelled",
    "failed",
]
STORED_ITEM_STATUSES = ["pending", "pushed", "decided", "undecided"]
STORED_STRATEGIES = ["pvar", "low-pvar", "reward-gap", "random", "random-disagree", "full"]


@pytest.mark.parametrize(
    ("enum", "stored"),
    [(RoundStatus, STORED_ROUND_STATUSES), (ItemStatus, STORED_ITEM_STATUSES), (Strategy, STORED_STRATEGIES)],
)
def test_enum_values_are_the_stored_strings(enum, stored):
    assert [m.value for m in enum] == stored
    for value in stored:
        member = enum(value)
        assert member == value and str(member) == value and f"{member}" == value
        assert repr(member) == repr(value)  # messages that print {x!r} read as before
        assert hash(member) == hash(value)  # a str key finds an enum key and vice versa


def test_round_groups():
    assert RoundStatus.open_states() == tuple(STORED_ROUND_STATUSES[:7])
    assert set(RoundStatus.closed_states()) == {"done", "cancelled", "failed"}
    assert set(RoundStatus.freeing_states()) == {"cancelled", "failed"}
    assert not set(RoundStatus.open_states()) & set(RoundStatus.closed_states())
    assert RoundStatus.DONE.is_closed and not RoundStatus.DONE.frees_prompts
    assert not RoundStatus.COLLECTING.is_closed


def test_item_groups():
    assert ItemStatus.pushed_states() == ("pushed", "decided", "undecided")
    assert ItemStatus.settled_states() == ("decided", "undecided")
    assert not ItemStatus.PENDING.is_pushed and ItemStatus.PUSHED.is_pushed
    assert not ItemStatus.PUSHED.is_settled


def test_strategy_registry_is_keyed_by_the_enum():
    assert list(STRATEGIES) == list(Strategy)
    assert all(isinstance(spec.name, Strategy) for spec in STRATEGIES.values())
    assert STRATEGIES["pvar"] is STRATEGIES[Strategy.PVAR]


def test_config_operator_settings_and_cli_use_the_strategy_enum():
    from loop.cli.app import build_parser

    cfg = parse_config({"selection": {"strategy": "low-pvar"}}, env={})
    assert cfg.selection.strategy is Strategy.LOW_PVAR
    assert parse_config({}, env={}).selection.strategy is Strategy.PVAR
    # random-disagree needs an experiment's annotator view: config does not offer it (unchanged)
    with pytest.raises(ConfigError, match="'random-disagree'"):
        parse_config({"selection": {"strategy": "random-disagree"}}, env={})
    assert parse_strategy("reward-gap") is Strategy.REWARD_GAP
    with pytest.raises(OperatorError, match="allowed: pvar, low-pvar"):
        parse_strategy("best")
    args = build_parser().parse_args(["select", "--strategy", "random-disagree"])
    assert args.strategy == Strategy.RANDOM_DISAGREE
    with pytest.raises(SystemExit):
        build_parser().parse_args(["select", "--strategy", "best"])
