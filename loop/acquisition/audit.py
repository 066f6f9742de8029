"""The audit slice: a few prompts per round drawn uniformly at random from those the strategy did NOT pick,
labelled like the rest, so PVar-picked labels can be compared with random ones while the loop runs.

Pure numpy, like the strategies: randomness comes in as an explicit Generator (the round seed's)."""

import math

import numpy as np

__all__ = ["audit_count", "draw_audit"]


def audit_count(budget: int, fraction: float) -> int:
    """Audit items in a budget: budget * fraction rounded half up (0.5 -> 1, never banker's rounding),
    capped at budget - 1 while budget > 0 so the strategy always keeps at least one pick."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"audit fraction must be in [0, 1), got {fraction!r}")
    if budget <= 0:
        return 0
    return min(math.floor(budget * fraction + 0.5), budget - 1)


def draw_audit(pool: int, picked: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (int64, unique, sorted by draw order) of min(n, free) candidates drawn uniformly from the
    `pool` candidates whose index is not in `picked`."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    rest = np.setdiff1d(np.arange(pool, dtype=np.int64), np.asarray(picked, dtype=np.int64))
    if n == 0 or rest.size == 0:
        return np.empty(0, dtype=np.int64)
    return rng.permutation(rest)[:n].astype(np.int64)
