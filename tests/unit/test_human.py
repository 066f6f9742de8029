"""Human evaluation: the win rate from the annotators' answers (tie = 0.5, discards do not vote), when a
comparison counts as answered, and the warning when the judge is the selection reward model."""

from __future__ import annotations

import hashlib

import pytest

from loop.config import parse_config
from loop.evaluation.human import Compared, human_win_rate, outcome, settled
from loop.report.data import judge_warning
from loop.rounds.human_evaluation import comparison_id


def _c(pid: str, answers: dict[str, str], need: int = 1, side: str = "a") -> Compared:
    return Compared(pid, side, answers, need)


def test_outcome_is_the_mean_vote_and_discards_do_not_vote():
    assert outcome({"x": "policy"}) == 1.0
    assert outcome({"x": "reference"}) == 0.0
    assert outcome({"x": "tie"}) == 0.5
    assert outcome({"x": "policy", "y": "tie", "z": "discard"}) == 0.75
    assert outcome({"x": "discard"}) is None and outcome({}) is None


def test_human_win_rate_counts_ties_as_half_and_leaves_out_discarded_prompts():
    comparisons = [
        _c("p1", {"ann": "policy"}),
        _c("p2", {"ann": "reference"}, side="b"),
        _c("p3", {"ann": "tie"}),
        _c("p4", {"ann": "policy"}, side="b"),
        _c("p5", {"ann": "discard"}),
    ]
    rate, details = human_win_rate(comparisons, n_bootstrap=500, seed=0)
    assert rate.n == 4 and rate.value == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert 0.0 <= rate.ci_low <= rate.value <= rate.ci_high <= 1.0
    assert details["votes"] == {"policy": 2, "reference": 1, "tie": 1, "discard": 1}
    assert details["annotators"] == ["ann"]
    assert [(p["prompt_id"], p["policy_side"], p["outcome"]) for p in details["per_prompt"]] == [
        ("p1", "a", 1.0),
        ("p2", "b", 0.0),
        ("p3", "a", 0.5),
        ("p4", "b", 1.0),
        ("p5", "a", None),
    ]


def test_no_votes_at_all_is_the_uninformative_half():
    rate, _ = human_win_rate([_c("p1", {"ann": "discard"})], n_bootstrap=10, seed=0)
    assert (rate.value, rate.ci_low, rate.ci_high, rate.n) == (0.5, 0.0, 1.0, 0)


def test_a_comparison_is_answered_by_its_overlap_discards_included():
    assert not settled(_c("p", {}, need=1))
    assert settled(_c("p", {"x": "discard"}, need=1))
    assert not settled(_c("p", {"x": "policy"}, need=2))
    assert settled(_c("p", {"x": "policy", "y": "reference"}, need=2))


def test_comparison_ids_are_keyed_hashes_stable_for_a_secret():
    s1, s2 = "01" * 32, "02" * 32
    a = comparison_id(s1, "ck", "ref", "p1", "yes", "no")
    assert a == comparison_id(s1, "ck", "ref", "p1", "yes", "no") and len(a) == 64
    assert a != comparison_id(s1, "ck", "ref", "p1", "no", "yes")
    assert a != comparison_id(s2, "ck", "ref", "p1", "yes", "no")
    unkeyed = hashlib.sha256("\x00".join(("eval", "ck", "ref", "p1", "yes", "no")).encode()).hexdigest()
    assert a != unkeyed  # the formula before the secret


def test_warns_when_the_judge_is_the_selection_reward_model(tmp_path):
    rm = tmp_path / "rm"
    rm.mkdir()
    assert parse_config({}, env={}).judge_warning is None  # the default judge is "human" (issue 26)
    default = parse_config({"evaluation": {"judge": "reward"}}, env={})
    assert default.judge_is_selection_model  # judge = "reward" is the [reward] model
    assert "[evaluation] judge = 'reward'" in default.judge_warning
    assert default.reward.model in default.judge_warning
    same = parse_config(
        {"reward": {"model": str(rm)}, "evaluation": {"judge": str(rm / ".." / "rm")}}, env={}
    )
    assert same.judge_warning and str(rm) in same.judge_warning
    for judge in ("human", "verifier", "OpenAssistant/reward-model-deberta-v3-large-v2"):
        assert parse_config({"evaluation": {"judge": judge}}, env={}).judge_warning is None


def test_report_warns_when_its_judge_selected_the_labels():
    assert "selected the labels" in judge_warning("reward:rm-1", {"rm-1"})
    assert judge_warning("reward:rm-2", {"rm-1"}) is None
    assert judge_warning("human", {"rm-1"}) is None and judge_warning(None, set()) is None


def test_sides_are_a_seeded_balanced_permutation():
    from loop.rounds.human_evaluation import _sides

    cfg = parse_config({}, env={})
    sides = _sides(cfg, "main-r1-abc", 9)
    assert sides == _sides(cfg, "main-r1-abc", 9) and sorted(sides) == ["a"] * 5 + ["b"] * 4
    assert any(_sides(cfg, f"main-r{i}-abc", 8) != _sides(cfg, "main-r1-abc", 8) for i in range(2, 6))


def test_an_experiment_refuses_the_human_judge():
    from loop.experiment.runner import ExperimentError, run_experiment

    cfg = parse_config({"evaluation": {"judge": "human"}}, env={})
    with pytest.raises(ExperimentError, match=r'\[evaluation\] judge = "human"'):
        run_experiment(cfg, uow=None, plan=None, annotator=None)
