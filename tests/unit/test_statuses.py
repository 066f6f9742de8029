"""The status and strategy enums are the strings the database already holds, with their groups defined once."""

from __future__ import annotations

import pytest

from loop.acquisition.strategies import EXPERIMENT_ONLY, PRODUCTION_STRATEGIES, STRATEGIES, Strategy
from loop.config import ConfigError, parse_config
from loop.rounds.operator_settings import OperatorError, parse_strategy
from storage.statuses import (
    PRODUCTION_ARM,
    Choice,
    ItemStatus,
    Metric,
    RoundStatus,
    TrainingRunStatus,
    Verdict,
    is_production_arm,
)

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
STORED_CHOICES = ["a", "b", "tie", "discard"]  # labels.choice; annotation_items.decision holds a, b or tie
STORED_VERDICTS = ["policy", "reference", "tie", "discard"]  # eval_comparisons.answers
STORED_TRAINING_RUN_STATUSES = ["running", "done"]
STORED_METRICS = ["pvar", "reward_gap", "excluded", "disagree"]  # prompt_scores.metric


@pytest.mark.parametrize(
    ("enum", "stored"),
    [
        (RoundStatus, STORED_ROUND_STATUSES),
        (ItemStatus, STORED_ITEM_STATUSES),
        (Strategy, STORED_STRATEGIES),
        (Choice, STORED_CHOICES),
        (Verdict, STORED_VERDICTS),
        (TrainingRunStatus, STORED_TRAINING_RUN_STATUSES),
        (Metric, STORED_METRICS),
    ],
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


def test_choice_groups_and_verdicts():
    assert Choice.voting() == ("a", "b", "tie")  # a discard is an answer that does not vote
    assert Choice.preferring() == ("a", "b")  # a training pair
    assert [c.flipped for c in Choice] == ["b", "a", "tie", "discard"]
    assert {c: Verdict.of(c) for c in Choice} == {
        "a": "policy",  # our orientation of a comparison: a = the checkpoint's response
        "b": "reference",
        "tie": "tie",
        "discard": "discard",
    }
    assert all(Verdict.of(v.choice) is v for v in Verdict)


def test_metric_groups():
    assert Metric.scored_markers() == ("pvar", "excluded")


def test_the_production_arm_is_named_once():
    assert PRODUCTION_ARM == "main"
    assert is_production_arm("main") and is_production_arm(PRODUCTION_ARM)
    assert not is_production_arm("exp-pvar") and not is_production_arm("pvar")


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
    args = build_parser().parse_args(["select", "--strategy", "low-pvar"])
    assert args.strategy == Strategy.LOW_PVAR
    with pytest.raises(SystemExit):
        build_parser().parse_args(["select", "--strategy", "best"])


def test_production_strategies_are_one_list_for_config_and_operators():
    """Issue 14 point 13: config and `strategy set` accept the same production strategies; the experiment-only
    arm is refused by both, naming the allowed ones."""
    from typing import get_args

    from loop.config import SelectionConfig

    assert set(PRODUCTION_STRATEGIES) | EXPERIMENT_ONLY == set(Strategy)
    assert Strategy.RANDOM_DISAGREE not in PRODUCTION_STRATEGIES
    assert get_args(SelectionConfig.model_fields["strategy"].annotation) == PRODUCTION_STRATEGIES
    for name in PRODUCTION_STRATEGIES:
        assert parse_config({"selection": {"strategy": name}}, env={}).selection.strategy is name
        assert parse_strategy(name) is name
    with pytest.raises(OperatorError) as e:
        parse_strategy("random-disagree")
    assert "experiment-only" in str(e.value)
    assert "allow: pvar, low-pvar, reward-gap, random, full" in str(e.value)
