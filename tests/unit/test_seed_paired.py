"""Arm differences paired by seed (t interval, hierarchical bootstrap) and rate intervals."""

import math

import numpy as np
import pytest

from loop.evaluation.seed_paired import (
    HierarchicalBootstrap,
    newcombe,
    paired_by_seed,
    t_interval,
    wilson,
)
from storage.errors import PvarLoopError


def test_t_interval_over_three_seeds_is_twice_as_wide_as_the_old_seed_bootstrap() -> None:
    # The committed sweep's per-seed PVar - random at 64 labels, 0.75 stand-in (docs/experiment-results.json):
    # the old seed bootstrap printed [-0.033, +0.052]; a t interval with 2 df is about twice as wide.
    t = t_interval([0.033203125, 0.02734375, -0.029296875])
    assert (round(t.low, 3), round(t.high, 3)) == (-0.075, 0.096)
    assert t.n == 3


def test_one_seed_has_no_interval_and_identical_seeds_a_zero_width_one() -> None:
    one = t_interval([0.2])
    assert one.mean == 0.2 and math.isnan(one.low) and math.isnan(one.high)
    same = t_interval([0.1, 0.1, 0.1])
    assert same.low == same.high == pytest.approx(0.1)


def _arm(level: float, shifts: dict[int, float], prompts: int = 20) -> dict[int, dict[str, float]]:
    return {
        s: {f"p{i}": level + shift + 0.01 * (i % 4) for i in range(prompts)} for s, shift in shifts.items()
    }


def test_pairing_by_seed_removes_what_a_seed_does_to_both_arms() -> None:
    """Seed s is the same RM draw in both arms: a per-seed shift both arms share cancels in the t interval and
    in the hierarchical bootstrap (which draws the same seeds and prompts for both arms)."""
    shifts = {0: 0.0, 1: 0.2, 2: -0.15, 3: 0.05}
    d = paired_by_seed(_arm(0.5, shifts), _arm(0.4, shifts), n_boot=300)
    assert d.mean == pytest.approx(0.1)
    assert d.low == pytest.approx(0.1) and d.high == pytest.approx(0.1)
    assert d.boot_low == pytest.approx(0.1) and d.boot_high == pytest.approx(0.1)
    assert d.per_seed == pytest.approx({s: 0.1 for s in shifts})


def test_seed_to_seed_variance_of_the_difference_widens_both_intervals() -> None:
    calm = paired_by_seed(_arm(0.5, {0: 0, 1: 0, 2: 0}), _arm(0.4, {0: 0, 1: 0, 2: 0}), n_boot=300)
    wild = paired_by_seed(_arm(0.5, {0: -0.05, 1: 0.05, 2: 0.0}), _arm(0.4, {0: 0, 1: 0, 2: 0}), n_boot=300)
    assert wild.high - wild.low > calm.high - calm.low + 0.1
    assert wild.boot_high - wild.boot_low > 0.02


def test_only_shared_seeds_and_prompts_count() -> None:
    a = _arm(0.5, {0: 0.0, 1: 0.0, 5: 0.3})
    b = _arm(0.4, {0: 0.0, 1: 0.0})
    b[1].pop("p3")
    d = paired_by_seed(a, b, n_boot=50)
    assert d.seeds == 2 and set(d.per_seed) == {0, 1}
    boot = HierarchicalBootstrap({"a": a, "b": b}, n_boot=10)
    assert "p3" not in boot.prompts and boot.seeds == [0, 1]
    with pytest.raises(PvarLoopError, match="share 0 seeds"):
        paired_by_seed(_arm(0.5, {0: 0.0}), _arm(0.4, {1: 0.0}))


def test_hierarchical_bootstrap_is_deterministic_under_its_seed() -> None:
    rng = np.random.default_rng(0)
    a = {s: {f"p{i}": float(rng.random()) for i in range(10)} for s in range(3)}
    b = {s: {f"p{i}": float(rng.random()) for i in range(10)} for s in range(3)}
    assert paired_by_seed(a, b, seed=3) == paired_by_seed(a, b, seed=3)
    assert paired_by_seed(a, b, seed=3).boot_low != paired_by_seed(a, b, seed=4).boot_low


def test_rates_get_wilson_and_newcombe_intervals() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II example (a), method 10: 56/70 - 48/80
    d = newcombe(56, 70, 48, 80)
    assert d.mean == pytest.approx(0.2)
    assert (round(d.low, 4), round(d.high, 4)) == (0.0524, 0.3339)
    w = wilson(0, 10)
    assert w.mean == 0.0 and w.low == pytest.approx(0.0, abs=1e-12) and round(w.high, 4) == 0.2775
    with pytest.raises(PvarLoopError, match="count <= nobs"):
        wilson(11, 10)
    with pytest.raises(PvarLoopError, match="level"):
        t_interval([1.0, 2.0], level=1.5)
