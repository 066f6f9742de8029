"""Per-annotator reliability measures (loop.quality.reliability) on hand-computed cases."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from annotation.aggregate import DecisionStatus, decide
from loop.quality.reliability import (
    ItemAnswer,
    by_item,
    chose_shown_a,
    cohen_kappa,
    gold_accuracy,
    krippendorff_alpha,
    majority_agreement,
    pairwise_kappa,
    plurality,
    reliability,
    seconds_per_answer,
    wilson,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Gold:
    """A gold answer as storage.repositories.gold.GoldAnswer will give it."""

    annotator: str
    round_id: int
    gold_id: int
    expected: str
    answer: str
    shown_swapped: bool = False
    answered_at: datetime | None = None


def _answers(rows: str, round_id: int = 1) -> list[ItemAnswer]:
    """'item annotator choice swapped' per whitespace-separated group of four, e.g. 'i1 x a 0'."""
    parts = rows.split()
    return [
        ItemAnswer(round_id, parts[k], parts[k + 1], parts[k + 2], parts[k + 3] == "1")
        for k in range(0, len(parts), 4)
    ]


def test_wilson_interval_matches_the_formula() -> None:
    # p = 0.8, n = 10, z = 1.96: centre (p + z²/2n)/(1 + z²/n) = 0.7167, half-width 0.2266.
    low, high = wilson(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 0) is None


def test_shown_side_undoes_the_swap() -> None:
    assert chose_shown_a("a", False) is True
    assert chose_shown_a("a", True) is False  # b was shown as A: answering a chose the side shown as B
    assert chose_shown_a("b", True) is True
    assert chose_shown_a("tie", False) is None and chose_shown_a("discard", True) is None


def test_gold_accuracy_counts_votes_not_discards() -> None:
    rows = [Gold("x", 1, 1, "a", "a"), Gold("x", 1, 2, "b", "a"), Gold("x", 1, 3, "tie", "tie")]
    rows.append(Gold("x", 1, 4, "a", "discard"))
    assert gold_accuracy(rows) == (2, 3)


AGREE = _answers(
    """i1 x a 0  i1 y a 0  i1 z a 0
       i2 x b 0  i2 y a 0  i2 z a 0
       i3 x tie 0  i3 y a 0  i3 z b 0
       i4 x discard 0  i4 y a 0  i4 z a 0
       i5 x a 0  i5 y discard 0  i5 z b 0"""
)


def test_agreement_with_the_majority_of_the_others() -> None:
    # x: i1 agrees; i2 disagrees; i3 the others split (not compared); i4 x discarded; i5 y's discard does not
    # vote, z's b is the others' majority: disagrees.
    assert majority_agreement(by_item(AGREE), "x") == (1, 3)
    # y: i1 agrees; i2 and i3 the others split; i4 agrees (x's discard does not vote); i5 y discarded.
    assert majority_agreement(by_item(AGREE), "y") == (2, 2)


def test_cohen_kappa_hand_computed() -> None:
    # p_o = 3/4; p_e = 0.5*0.25 + 0.5*0.75 = 0.5; kappa = (0.75 - 0.5) / (1 - 0.5) = 0.5.
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # both constant: undefined
    assert cohen_kappa(["a"], ["a"]) is None
    pairs = _answers(
        "i1 x a 0  i1 y a 0  i2 x a 0  i2 y b 0  i3 x b 0  i3 y b 0  i4 x b 0  i4 y b 0  i4 z a 0"
    )
    assert pairwise_kappa(by_item(pairs), "x") == {
        "y": {"items": 4, "kappa": pytest.approx(0.5)},
        "z": {"items": 1, "kappa": None},
    }


def test_krippendorff_alpha_hand_computed() -> None:
    # Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8.
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (2 * n_a * n_b) = 1 - 7 * 2 / 30 = 0.5333.
    rows = _answers(
        "i1 x a 0  i1 y a 0  i2 x a 0  i2 y b 0  i3 x b 0  i3 y b 0  i4 x b 0  i4 y b 0  i4 z discard 0"
    )
    assert krippendorff_alpha(rows) == pytest.approx(1 - 14 / 30)
    assert krippendorff_alpha(_answers("i1 x a 0  i1 y a 0")) is None  # one value: undefined
    assert krippendorff_alpha(_answers("i1 x a 0  i2 y b 0")) is None  # no item with two votes


def test_seconds_per_answer_is_the_median_gap_without_breaks() -> None:
    times = [T0 + timedelta(seconds=s) for s in (30, 0, 10, 734, 730)]  # unordered; 30 -> 730 is a break
    assert seconds_per_answer([*times, None]) == (10.0, 3)  # gaps 10, 20, 4
    assert seconds_per_answer([T0]) == (None, 0)


def test_figures_per_round_and_cumulative() -> None:
    first = _answers("i1 x a 0  i1 y a 0  i2 x b 1  i2 y a 1  i3 x a 1  i3 y tie 0", round_id=1)
    second = _answers("i4 x tie 0  i4 y a 0  i5 x discard 0  i5 y b 1", round_id=2)
    first = [
        ItemAnswer(a.round_id, a.item_id, a.annotator, a.choice, a.swapped, T0 + timedelta(seconds=5 * k))
        for k, a in enumerate(first)
    ]
    gold = [Gold("x", 2, 1, "a", "a", shown_swapped=False), Gold("x", 2, 2, "b", "a", shown_swapped=True)]
    rel = reliability([*first, *second], gold)

    x = rel.annotators["x"]
    assert x.answers == 7  # five round answers, two gold
    assert (x.gold_correct, x.gold_answers, x.gold_accuracy) == (1, 2, 0.5)
    # a/b answers: i1 a (shown A), i2 b swapped (shown A), i3 a swapped (shown B), gold a (A), gold a swapped (B)
    assert (x.shown_a, x.ab_answers, x.position_bias) == (3, 5, 0.6)
    assert x.position_interval == pytest.approx(wilson(3, 5))
    assert (x.tie_rate, x.discard_rate) == (pytest.approx(1 / 7), pytest.approx(1 / 7))
    # Against y (the only other): i1 agrees, i2 and i3 do not, i4 not (tie vs a); i5 x discarded.
    assert (x.majority_items, x.majority_agreement) == (4, 0.25)
    assert x.kappa["y"]["items"] == 4
    assert (x.seconds_per_answer, x.timed_gaps) == (10.0, 2)  # x answered at 0, 10, 20 s

    assert set(rel.rounds) == {1, 2}
    assert rel.rounds[1].figures["x"].gold_answers == 0
    assert rel.rounds[2].figures["x"].gold_answers == 2
    assert rel.rounds[2].figures["x"].answers == 4
    assert rel.rounds[1].figures["y"].answers == 3


def test_cohen_kappa_agrees_with_scikit_learn() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = random.Random(5)
    for _ in range(20):
        first = [rng.choice("ab") if rng.random() < 0.8 else "tie" for _ in range(30)]
        second = [c if rng.random() < 0.6 else rng.choice(["a", "b", "tie"]) for c in first]
        assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))


def test_plurality_is_the_decision_rule() -> None:
    rng = random.Random(2)
    for _ in range(500):
        votes = [rng.choice(["a", "b", "tie", "discard"]) for _ in range(rng.randint(0, 5))]
        d = decide(votes, 1)
        assert plurality(votes) == (d.choice if d.status == DecisionStatus.DECIDED else None), votes
