"""Majority vote and agreement statistics on hand-computed cases."""

from __future__ import annotations

import pytest

from annotation.aggregate import agreement, decide


@pytest.mark.parametrize(
    ("answers", "status", "choice"),
    [
        (["a", "a", "b"], "decided", "a"),
        (["b"], "decided", "b"),
        (["tie", "tie", "a"], "decided", "tie"),
        (["a", "b"], "undecided", None),
        (["a", "b", "discard"], "undecided", None),
        (["discard", "discard"], "undecided", None),
        (["a", "discard"], "decided", "a"),
    ],
)
def test_majority_vote(answers, status, choice):
    d = decide(answers)
    assert (d.status, d.choice) == (status, choice)
    assert sum(d.votes.values()) == len(answers)


def test_waiting_until_enough_votes_and_disagreement_flag():
    assert decide(["a", "discard"], min_answers=3).status == "waiting"
    d = decide(["a", "a", "b"], min_answers=3)
    assert d.status == "decided" and d.disagreement
    assert not decide(["a", "a"]).disagreement


def test_unknown_answer_rejected():
    with pytest.raises(ValueError, match="unknown answers"):
        decide(["a", "maybe"])


def test_agreement_perfect_and_fleiss_reference():
    perfect = agreement([["a", "a"], ["b", "b"], ["tie", "tie"]])
    assert perfect.pairwise == 1.0 and perfect.fleiss_kappa == pytest.approx(1.0)
    # Hand-computed: items (a,a,b), (b,b,b), (a,b,tie): P_i = 1/3, 1, 0 -> P_bar = 4/9;
    # totals a=3, b=5, tie=1 of 9 -> P_e = (9 + 25 + 1) / 81 = 35/81;
    # kappa = (4/9 - 35/81) / (1 - 35/81) = 1/46
    mixed = agreement([["a", "a", "b"], ["b", "b", "b"], ["a", "b", "tie"]])
    assert mixed.pairwise == pytest.approx(4 / 9)
    assert mixed.fleiss_kappa == pytest.approx(1 / 46)
    assert perfect.unanimous == 1.0 and mixed.unanimous == pytest.approx(1 / 3)  # only (b,b,b) is unanimous


def test_agreement_ignores_single_votes_and_discards():
    a = agreement([["a"], ["a", "discard"], ["b", "b", "discard"]])
    assert a.items == 1 and a.pairwise == 1.0 and a.fleiss_kappa is None and a.unanimous == 1.0
    assert agreement([]).items == 0 and agreement([]).unanimous is None
