"""`[quality]` thresholds (loop.quality.flags): who is flagged, with enough answers only."""

from __future__ import annotations

from loop.config import QualityConfig
from loop.quality.flags import flags
from loop.quality.reliability import Figures, wilson

Q = QualityConfig(min_gold_accuracy=0.6, max_position_bias=0.15, min_seconds_per_answer=3.0, min_answers=20)


def _position(shown_a: int, n: int) -> Figures:
    return Figures(
        answers=n,
        ab_answers=n,
        shown_a=shown_a,
        position_bias=shown_a / n,
        position_interval=wilson(shown_a, n),
    )


def test_position_bias_flags_only_an_interval_outside_the_band() -> None:
    (why,) = flags(_position(20, 20), Q)  # Wilson 95%: 0.839-1.0, above 0.65
    assert why.startswith("position bias: chose the side shown as A in 100% of 20 a/b answers")
    assert flags(_position(14, 20), Q) == []  # 0.70, but the interval (0.48-0.85) reaches into the band
    assert flags(_position(0, 20), Q) != []  # always B is as biased
    assert flags(_position(19, 19), Q) == []  # below min_answers


def test_gold_accuracy_flags_on_the_upper_bound() -> None:
    def gold(correct: int, n: int) -> Figures:
        return Figures(
            gold_answers=n, gold_correct=correct, gold_accuracy=correct / n, gold_interval=wilson(correct, n)
        )

    (why,) = flags(gold(5, 20), Q)  # 0.25, upper bound 0.47
    assert why == "gold accuracy 0.25 (5 of 20, 95% CI 0.11-0.47) is below min_gold_accuracy 0.6"
    assert flags(gold(8, 20), Q) == []  # 0.40, upper bound 0.61: not sure enough
    assert flags(gold(0, 4), Q) == []  # below min_gold_answers (5)


def test_pace_flags_a_fast_annotator_over_enough_timed_gaps() -> None:
    fast = Figures(answers=21, seconds_per_answer=1.2, timed_gaps=20)
    assert flags(fast, Q) == ["pace: median 1.2 s per answer over 20 gaps is below min_seconds_per_answer 3"]
    # Many answers but few timed gaps (answered in sessions days apart): a median of 3 gaps flags nobody.
    assert flags(Figures(answers=60, seconds_per_answer=1.2, timed_gaps=3), Q) == []
    assert flags(Figures(answers=21, seconds_per_answer=3.0, timed_gaps=20), Q) == []
