"""Operator commands: budget/strategy edge cases with their messages, and every action recorded."""

from __future__ import annotations

import json

import pytest

from loop.cli.app import main


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", f"sqlite:///{tmp_path / 'ops.db'}")
    monkeypatch.setenv("PVAR_LOOP_ACTOR", "alice")
    assert main(["db", "upgrade"]) == 0
    (tmp_path / "p.jsonl").write_text("".join(f'{{"prompt": "p{i}"}}\n' for i in range(5)))
    assert main(["ingest", "p.jsonl"]) == 0
    return tmp_path


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "budget must be 0 (pause new rounds) or more, got -1"),
        ("2.5", "budget must be a whole number of items (prompts sent for labelling), got '2.5'"),
        ("ten", "budget must be a whole number of items (prompts sent for labelling), got 'ten'"),
    ],
)
def test_bad_budgets_rejected(project, capsys, value, message):
    assert main(["budget", "set", value]) == 2
    assert message in capsys.readouterr().err


def test_budget_zero_pauses_and_large_budget_says_so(project, capsys):
    assert main(["budget", "set", "0"]) == 0
    assert "no new round will start" in capsys.readouterr().out
    assert main(["round", "start"]) == 2
    assert "error: budget is 0 for round 1: new rounds are paused" in capsys.readouterr().err
    assert main(["budget", "set", "50"]) == 0
    assert "the pool has 5 train prompts" in capsys.readouterr().out


def test_unknown_strategy_and_past_round(project, capsys):
    assert main(["strategy", "set", "best"]) == 2
    assert "unknown strategy 'best'; allowed: pvar" in capsys.readouterr().err
    assert main(["budget", "set", "3", "--from-round", "0"]) == 2
    assert "applies from round 1 on" in capsys.readouterr().err


def test_strategy_set_refuses_the_experiment_only_arm(project, capsys):
    """Issue 14 point 13: `strategy set random-disagree` exits 2 naming the allowed strategies and records
    nothing (the config refuses it too)."""
    assert main(["strategy", "set", "random-disagree"]) == 2
    err = capsys.readouterr().err
    assert "'random-disagree' is an experiment-only arm" in err
    assert "allow: pvar, low-pvar, reward-gap, random, full" in err
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["new_rounds"]["strategy"] == "pvar" and status["operator_actions"] == []
    assert main(["strategy", "set", "reward-gap"]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new_rounds"]["strategy"] == "reward-gap"


def test_budget_applies_from_next_round_and_actions_recorded(project, capsys):
    assert main(["budget", "set", "4"]) == 0
    assert main(["strategy", "set", "random", "--from-round", "2"]) == 0
    assert main(["round", "start"]) == 0
    assert "round 1 started (pvar, budget 4)" in capsys.readouterr().out
    assert main(["round", "start"]) == 2
    assert "error: round 1 is still planned" in capsys.readouterr().err
    assert main(["round", "cancel", "1"]) == 0
    assert main(["round", "start"]) == 0
    assert "round 2 started (random, budget 4)" in capsys.readouterr().out
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    actions = [(a["actor"], a["action"]) for a in status["operator_actions"]]
    assert ("alice", "set budget") in actions and ("alice", "set strategy") in actions
    assert ("alice", "cancel round") in actions and ("alice", "start round") in actions
    assert [r["status"] for r in status["rounds"]] == ["cancelled", "planned"]


def test_budget_is_written_from_an_int_and_read_back_as_one(project):
    """The repository is the one place loop_settings' text is converted: the stored text is what it always
    was ("6"), callers only ever see ints."""
    from sqlalchemy import select

    from storage.db import UnitOfWork, make_engine
    from storage.models import LoopSetting
    from storage.repositories import settings

    assert main(["budget", "set", "6"]) == 0
    assert main(["strategy", "set", "random"]) == 0
    with UnitOfWork(make_engine(f"sqlite:///{project / 'ops.db'}"))() as s:
        assert settings.budget_for_round(s, 1) == 6 and isinstance(settings.budget_for_round(s, 1), int)
        assert settings.budget_for_round(s, 0) is None
        assert settings.strategy_for_round(s, 1) == "random"
        stored = dict(s.execute(select(LoopSetting.key, LoopSetting.value)).all())
        assert stored == {"budget": "6", "strategy": "random"}
        with pytest.raises(TypeError, match="from an int"):
            settings.put_setting(s, settings.BUDGET, "7", from_round=1)


# Every way an operator command is refused (issue 26): the argv, then what the one-line error must say.
REFUSALS = [
    (["budget", "set", "0"], None),  # not a refusal: pauses, so that `round start` below is refused
    (["round", "start"], "new rounds are paused"),
    (["budget", "set", "-2"], "budget must be 0"),
    (["strategy", "set", "best"], "unknown strategy"),
    (["budget", "set", "2"], None),
    (["round", "start"], None),
    (["round", "start"], "round 1 is still planned; one round at a time"),
    (["budget", "set", "3", "--from-round", "1"], "applies from round 2 on"),
    (["round", "advance", "7"], "no round 7"),
    (["round", "cancel", "7"], "no round 7"),
    (["round", "cancel", "1"], None),
    (["round", "cancel", "1"], "round 1 is already cancelled"),
    (["round", "advance", "1"], "round 1 is cancelled: a closed round does not move"),
    (["ingest", "missing.jsonl"], "missing.jsonl"),
    (["train", "--round", "1"], "round 1"),
    (["evaluate"], "no trained checkpoint yet"),
]


def test_every_refusal_is_one_error_line_with_exit_2(project, capsys):
    """Issue 26: `round start` under budget 0 exited 1 without `error:`. Each refusal: exit 2, nothing on
    stdout, one line on stderr starting `error: ` that says why."""
    for argv, why in REFUSALS:
        code = main(argv)
        out, err = capsys.readouterr()
        if why is None:
            assert code == 0, (argv, out, err)
            continue
        assert code == 2, (argv, code, out, err)
        assert out == "" and err.startswith("error: ") and err.count("\n") == 1, (argv, out, err)
        assert why in err, (argv, err)
