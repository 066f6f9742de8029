"""loop.evaluation.audit against published values (Newcombe 1998, Statistics in Medicine 17: 857-872 and
873-890) and the sentence status/report print."""

from dataclasses import dataclass, field

import pytest

from loop.evaluation.audit import audit_summary, compare, newcombe, wilson


@pytest.mark.parametrize(
    ("x", "n", "lo", "hi"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_1998(x, n, lo, hi):
    got = wilson(x, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_without_data_is_uninformative():
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "lo", "hi"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
    ],
)
def test_newcombe_difference_matches_method_10(x1, n1, x2, n2, lo, hi):
    assert newcombe(x1, n1, x2, n2) == pytest.approx((lo, hi), abs=1e-4)


@dataclass
class Item:
    round_number: int
    audit: bool
    status: str
    decision: str | None
    votes: dict = field(default_factory=dict)
    dpo_margin: float | None = None


def _items(rnd, audit, a, b, tie, undecided):
    return (
        [Item(rnd, audit, "decided", "a", {"a": 2}) for _ in range(a)]
        + [Item(rnd, audit, "decided", "b", {"b": 1, "a": 0}) for _ in range(b)]
        + [Item(rnd, audit, "decided", "tie", {"tie": 2}) for _ in range(tie)]
        + [Item(rnd, audit, "undecided", None, {"a": 1, "b": 1}) for _ in range(undecided)]
    )


def test_compare_counts_the_three_measures():
    out = compare(_items(1, False, 6, 2, 1, 1) + _items(1, True, 1, 1, 0, 2))
    assert (out["pvar"]["decided"]["x"], out["pvar"]["decided"]["n"]) == (8, 10)
    assert (out["audit"]["decided"]["x"], out["audit"]["decided"]["n"]) == (2, 4)
    assert (out["pvar"]["rm_agreement"]["x"], out["pvar"]["rm_agreement"]["n"]) == (6, 8)
    # items with 2+ votes: 6 'a a' + 1 'tie tie' agree, 1 'a b' does not
    assert (out["pvar"]["annotator_agreement"]["x"], out["pvar"]["annotator_agreement"]["n"]) == (7, 8)
    assert out["pvar"]["annotator_agreement"]["pairwise"] == pytest.approx(7 / 8)
    assert out["difference"]["decided"]["diff"] == pytest.approx(0.8 - 0.5)
    assert out["difference"]["decided"]["ci"] == pytest.approx(list(newcombe(8, 10, 2, 4)))


def test_sentence_says_more_signal_only_when_the_interval_excludes_0():
    items = _items(1, False, 30, 26, 0, 14) + _items(2, False, 30, 26, 0, 14)
    items += _items(1, True, 2, 2, 0, 6) + _items(2, True, 2, 2, 0, 6)
    s = audit_summary(items)
    lo, hi = newcombe(112, 140, 8, 20)
    assert s["sentence"] == (
        f"PVar items: 80% decided vs 40% for audit items, +40 pts [{100 * lo:+.0f}, {100 * hi:+.0f}] over 2 "
        "rounds: PVar-selected items carry more signal than random ones so far."
    )
    assert [r["round"] for r in s["rounds"]] == [1, 2]


def test_sentence_is_honest_when_it_cannot_tell():
    s = audit_summary(_items(1, False, 3, 1, 0, 1) + _items(1, True, 1, 1, 0, 1))
    assert s["sentence"].endswith("over 1 round: cannot tell yet, the interval contains 0.")
    s = audit_summary(_items(1, False, 3, 1, 0, 1))
    assert "cannot tell yet" in s["sentence"] and "no audit item has an outcome yet" in s["sentence"]
    assert audit_summary([])["sentence"].startswith("Audit: cannot tell yet")


def test_dpo_margin_per_group_with_welch_interval():
    pvar = [Item(1, False, "decided", "a", {"a": 1}, m) for m in (0.5, 0.7, 0.9, 0.7)]
    audit = [Item(1, True, "decided", "a", {"a": 1}, m) for m in (0.1, 0.3)]
    untrained = [Item(1, True, "decided", "tie", {"tie": 1})]  # ties are not trained on: no margin
    s = audit_summary(pvar + audit + untrained)
    got = s["cumulative"]
    assert (got["pvar"]["dpo_margin"]["n"], got["audit"]["dpo_margin"]["n"]) == (4, 2)
    assert got["pvar"]["dpo_margin"]["mean"] == pytest.approx(0.7)
    half_p = 1.959963984540054 * (0.0266667**0.5) / 2  # sd of (.5,.7,.9,.7) = sqrt(0.08/3)
    assert got["pvar"]["dpo_margin"]["ci"] == pytest.approx([0.7 - half_p, 0.7 + half_p], rel=1e-4)
    d = got["difference"]["dpo_margin"]
    half = 1.959963984540054 * (0.0266667 / 4 + 0.02 / 2) ** 0.5
    assert d["diff"] == pytest.approx(0.5) and d["ci"] == pytest.approx([0.5 - half, 0.5 + half], rel=1e-4)
    assert s["margin_sentence"].startswith("DPO reward margin after training: PVar items +0.70 [")
    assert "vs audit items +0.20 [" in s["margin_sentence"] and "difference +0.50 [" in s["margin_sentence"]


def test_no_margin_sentence_before_training():
    assert (
        audit_summary(_items(1, False, 3, 1, 0, 1) + _items(1, True, 1, 1, 0, 1))["margin_sentence"] is None
    )
