"""Preference variance (PVar) and reward gap per prompt, from reward-model scores (pure numpy, no I/O).

PVar is the offline reward-model estimator of "On the Role of Preference Variance in Preference
Optimization" (Guo et al., arXiv 2510.13022): for the K rewards r_1..r_K of one prompt,
p_ij = sigmoid(r_i - r_j) over all ORDERED pairs i != j and PVar = mean((p_ij - 0.5)^2). Over ordered pairs
the mean of p_ij is exactly 0.5, so this is the variance of the pairwise preference probabilities and does not
depend on how a pair is oriented. PVar is 0 exactly when all rewards of a prompt are equal (gaps below about
1e-154 also give 0: their squared probabilities underflow float64).

Both functions accept either a 2-D array of shape (n_prompts, K) or a sequence of 1-D arrays whose lengths
may differ (ragged K); ragged input is computed vectorised per group of equal K. Invalid input (fewer than two
rewards for a prompt, NaN or infinite rewards, non-numeric values) raises ValueError naming the prompt index,
so a bad score can never turn into a silent NaN downstream.
"""

from collections.abc import Callable, Iterable, Mapping

import numpy as np

__all__ = ["RewardsInput", "preference_variance", "reward_gap"]

# Upper bound on elements of one (rows, K, K) pairwise block; keeps memory flat for large pools or large K.
_MAX_BLOCK_ELEMENTS = 1 << 22

RewardsInput = np.ndarray | Iterable[np.ndarray] | Iterable[Iterable[float]]


def preference_variance(rewards: RewardsInput) -> np.ndarray:
    """PVar per prompt as float64, shape (n_prompts,); 0 <= PVar <= 0.25 (0.25 only at float64 saturation)."""
    return _per_prompt(rewards, _pvar_block)


def reward_gap(rewards: RewardsInput) -> np.ndarray:
    """max_k r_k - min_k r_k per prompt as float64 (the paper's competing heuristic); same inputs as PVar.

    A gap beyond the float64 range (rewards near +-1e308) comes out as +inf, never NaN.
    """
    return _per_prompt(rewards, _gap_block)


def _pvar_block(block: np.ndarray) -> np.ndarray:
    """PVar of each row of a finite (rows, K) block, K >= 2."""
    n, k = block.shape
    out = np.empty(n, dtype=np.float64)
    rows_per_chunk = max(1, _MAX_BLOCK_ELEMENTS // (k * k))
    # sigmoid(d) - 0.5 == tanh(d / 2) / 2: no exp overflow and no cancellation against 0.5 for huge gaps.
    # A difference may overflow to +-inf for rewards near the float64 limit; tanh(+-inf) = +-1 is then exact.
    with np.errstate(over="ignore"):
        for start in range(0, n, rows_per_chunk):
            chunk = block[start : start + rows_per_chunk]
            diffs = chunk[:, :, None] - chunk[:, None, :]
            half = 0.5 * np.tanh(0.5 * diffs)
            # The diagonal (i == j) contributes exactly 0, so summing all K*K cells sums the ordered pairs.
            out[start : start + rows_per_chunk] = np.sum(half * half, axis=(1, 2)) / (k * (k - 1))
    return out


def _gap_block(block: np.ndarray) -> np.ndarray:
    """max - min of each row of a finite (rows, K) block."""
    with np.errstate(over="ignore"):
        return np.max(block, axis=1) - np.min(block, axis=1)


def _per_prompt(rewards: RewardsInput, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Validate `rewards`, then apply `fn` to each group of prompts sharing the same K."""
    if isinstance(rewards, np.ndarray) and rewards.dtype != object:
        if rewards.ndim != 2:
            raise ValueError(
                f"rewards must be a 2-D array (n_prompts, K) or a sequence of 1-D arrays; got a "
                f"{rewards.ndim}-D array of shape {rewards.shape} (wrap one prompt's rewards in a list)"
            )
        block = _as_float_block(rewards)
        _raise_first(_find_problems(block, np.arange(block.shape[0])))
        return fn(block) if block.shape[0] else np.empty(0, dtype=np.float64)

    if isinstance(rewards, str | bytes | Mapping):
        raise ValueError(
            f"rewards must be a 2-D array or a sequence of 1-D arrays, got {type(rewards).__name__}"
        )
    try:
        items = list(rewards)
    except TypeError as e:
        raise ValueError(f"rewards must be a 2-D array or a sequence of 1-D arrays: {e}") from e

    rows = [_as_row(i, item) for i, item in enumerate(items)]
    out = np.empty(len(rows), dtype=np.float64)
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.size, []).append(i)
    blocks = []
    problems = []
    for k, idx in groups.items():
        index = np.asarray(idx, dtype=np.intp)
        block = np.stack([rows[i] for i in idx]) if k else np.empty((len(idx), 0))
        problems.extend(_find_problems(block, index))
        blocks.append((index, block))
    _raise_first(problems)
    for index, block in blocks:
        out[index] = fn(block)
    return out


def _as_float_block(values: np.ndarray) -> np.ndarray:
    """A real-valued array as float64; other dtypes (strings, complex) are rejected, not coerced."""
    if values.dtype.kind not in "biuf":
        raise ValueError(f"rewards must be real numbers, got dtype {values.dtype}")
    return np.asarray(values, dtype=np.float64)


def _as_row(index: int, item: object) -> np.ndarray:
    """One prompt's rewards as a 1-D float64 array; errors name the prompt."""
    try:
        row = np.asarray(item)
    except ValueError as e:  # e.g. an inhomogeneous nested list
        raise ValueError(f"prompt {index}: rewards are not a 1-D array of numbers ({e})") from e
    if row.ndim != 1:
        raise ValueError(f"prompt {index}: rewards must be a 1-D array, got shape {row.shape}")
    if row.dtype.kind not in "biuf":
        raise ValueError(f"prompt {index}: rewards must be real numbers, got dtype {row.dtype}")
    return row.astype(np.float64, copy=False)


def _find_problems(block: np.ndarray, index: np.ndarray) -> list[tuple[int, str]]:
    """(prompt index, reason) for every prompt in `block` (original indices `index`) that cannot be scored."""
    if block.shape[0] == 0:
        return []
    k = block.shape[1]
    if k < 2:
        return [(int(i), f"needs at least 2 rewards to compare, got {k}") for i in index]
    finite = np.isfinite(block)
    problems = []
    for row in np.flatnonzero(~finite.all(axis=1)):
        col = int(np.flatnonzero(~finite[row])[0])
        kind = "NaN" if np.isnan(block[row, col]) else "infinite"
        problems.append((int(index[row]), f"reward {col} is {kind} ({block[row, col]})"))
    return problems


def _raise_first(problems: list[tuple[int, str]]) -> None:
    """Raise ValueError for the lowest-indexed bad prompt, saying how many others are bad too."""
    if not problems:
        return
    index, reason = min(problems)
    more = f" (and {len(problems) - 1} more bad prompt(s))" if len(problems) > 1 else ""
    raise ValueError(f"prompt {index}: {reason}{more}")
