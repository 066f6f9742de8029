"""`[quality]` thresholds applied to an annotator's figures: why an annotator is flagged (reported, never
dropped). Pure.

Rules, each needing enough answers so that a few unlucky answers do not flag anybody:
- gold accuracy: the Wilson 95% interval's UPPER bound is below min_gold_accuracy (with min_gold_answers);
- position bias: the Wilson 95% interval of the share choosing the side shown as A lies entirely outside
  0.5 +- max_position_bias (with min_answers a/b answers), i.e. the bias is beyond the band with 95% confidence;
- pace: the median seconds per answer is below min_seconds_per_answer (over min_answers timed gaps: answers
  that follow one another closely enough to time, not all the answers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loop.config import QualityConfig
    from loop.quality.reliability import Figures, Reliability


def flags(f: Figures, q: QualityConfig) -> list[str]:
    """Why these figures fall below the thresholds (empty: not flagged)."""
    out = []
    if f.gold_interval is not None and f.gold_answers >= q.min_gold_answers:
        low, high = f.gold_interval
        if high < q.min_gold_accuracy:
            out.append(
                f"gold accuracy {f.gold_accuracy:.2f} ({f.gold_correct} of {f.gold_answers}, 95% CI "
                f"{low:.2f}-{high:.2f}) is below min_gold_accuracy {q.min_gold_accuracy:g}"
            )
    if f.position_interval is not None and f.ab_answers >= q.min_answers:
        low, high = f.position_interval
        band = (0.5 - q.max_position_bias, 0.5 + q.max_position_bias)
        if low > band[1] or high < band[0]:
            out.append(
                f"position bias: chose the side shown as A in {f.position_bias:.0%} of {f.ab_answers} a/b "
                f"answers (95% CI {low:.2f}-{high:.2f}, outside 0.5 +- max_position_bias {q.max_position_bias:g})"
            )
    pace = f.seconds_per_answer
    if pace is not None and f.timed_gaps >= q.min_answers and pace < q.min_seconds_per_answer:
        out.append(
            f"pace: median {pace:.1f} s per answer over {f.timed_gaps} gaps is below "
            f"min_seconds_per_answer {q.min_seconds_per_answer:g}"
        )
    return out


def flag_all(rel: Reliability, q: QualityConfig) -> Reliability:
    """Fill every Figures' flags (cumulative and per round) in place; returns `rel`."""
    for f in rel.annotators.values():
        f.flags = flags(f, q)
    for r in rel.rounds.values():
        for f in r.figures.values():
            f.flags = flags(f, q)
    return rel
