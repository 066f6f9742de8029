"""Label efficiency: how many labels a strategy needs to reach a target quality (pure, no database).

A curve is [(labels, metric)] with labels ascending, e.g. an arm's mean judge score after each budget; it is
read piecewise-linearly between its points. From bootstrap replicates of the curves (and of the target, when
the target is itself estimated, e.g. "random's score at 256 labels"), labels_to_reach_interval gives the
interval of the labels needed, where "not reached within the curve" is an answer, not an error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from loop.evaluation.paired import EvaluationDataError


def _check_curve(curve: Sequence[tuple[float, float]]) -> None:
    if not curve:
        raise EvaluationDataError("labels_to_reach: the curve has no points")
    labels = [x for x, _ in curve]
    if any(b <= a for a, b in itertools.pairwise(labels)):
        raise EvaluationDataError(f"labels_to_reach: label counts must be strictly ascending, got {labels}")
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in curve):
        raise EvaluationDataError(f"labels_to_reach: the curve has a non-finite point: {list(curve)}")


def labels_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The smallest label count at which the piecewise-linear curve first reaches target (interpolated
    between the two points around the crossing); None if it never does within the curve."""
    _check_curve(curve)
    x0, y0 = curve[0]
    if y0 >= target:
        return float(x0)
    for x1, y1 in curve[1:]:
        if y1 >= target:
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
        x0, y0 = x1, y1
    return None


def labels_to_reach_interval(
    curves_boot: Sequence[Sequence[tuple[float, float]]],
    targets_boot: Sequence[float],
    level: float = 0.95,
) -> tuple[float | None, float | None, float]:
    """(low, high, share reached) of the labels needed over bootstrap replicates (curve r with target r).

    A replicate that never reaches its target counts as needing more labels than the curve has (+inf), so a
    bound that falls on such replicates is None: "not reached within the curve". The bounds are order
    statistics (no interpolation across +inf).
    """
    if len(curves_boot) != len(targets_boot):
        raise EvaluationDataError(
            f"labels_to_reach_interval: {len(curves_boot)} curves but {len(targets_boot)} targets"
        )
    if not curves_boot:
        raise EvaluationDataError("labels_to_reach_interval: no bootstrap replicates given")
    if not 0.0 < level < 1.0:
        raise EvaluationDataError(f"labels_to_reach_interval: level must be in (0, 1), got {level}")
    needed = [labels_to_reach(c, t) for c, t in zip(curves_boot, targets_boot, strict=True)]
    values = np.array([math.inf if n is None else n for n in needed], dtype=float)
    alpha = (1.0 - level) / 2.0
    low = float(np.quantile(values, alpha, method="lower"))
    high = float(np.quantile(values, 1.0 - alpha, method="higher"))
    share = float(np.isfinite(values).mean())
    return (None if math.isinf(low) else low), (None if math.isinf(high) else high), share
