"""The pre-registered run's sizing: power of the non-inferiority test, eval designs, cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loop.experiment.sweep.power import main, power, prompt_factor, seeds_for

ROOT = Path(__file__).resolve().parents[5]


def test_power_matches_a_simulation_of_the_decision_rule() -> None:
    """P(lower bound of the 95% t interval over n seeds > -m) computed with the noncentral t agrees with
    simulating the rule itself."""
    from scipy import stats

    rng = np.random.default_rng(0)
    n, sd, true_d, m = 16, 0.04, 0.005, 0.01
    d = rng.normal(true_d, sd, size=(20000, n))
    low = d.mean(axis=1) - stats.t.ppf(0.975, n - 1) * d.std(axis=1, ddof=1) / np.sqrt(n)
    assert power(n, sd, true_d, m) == pytest.approx(float((low > -m).mean()), abs=0.01)
    assert seeds_for(0.8, sd, true_d, m) > n


def test_more_prompts_with_fewer_samples_never_loses_at_the_same_answer_count() -> None:
    assert prompt_factor((64, 4), 0.3) == pytest.approx(1.0)
    assert prompt_factor((256, 1), 0.0) == pytest.approx(0.25)  # all between-prompt: 4x the prompts
    assert prompt_factor((256, 1), 1.0) == pytest.approx(1.0)  # all sampling noise: no gain, no loss
    for share in np.linspace(0, 1, 11):
        assert prompt_factor((256, 1), share) <= prompt_factor((128, 2), share) <= 1.0 + 1e-12


def test_the_command_prints_the_computation_from_the_committed_run(capsys) -> None:
    assert main(["--from", str(ROOT / "docs" / "experiment-standard-run.json")]) == 0
    out = capsys.readouterr().out
    assert "standin-0.75 @ 64: +0.010 [-0.075, +0.096] over 3 seeds" in out
    assert "learned: 111/192 vs 77/192: +0.177 [+0.077, +0.272]" in out
    assert "Chosen: 256 x 1" in out and "16 seeds:" in out and "total about" in out


def test_a_missing_results_file_is_refused_naming_it(tmp_path: Path, capsys) -> None:
    assert main(["--from", str(tmp_path / "none.json")]) == 2
    assert "none.json: no such results file" in capsys.readouterr().err


def test_two_sided_power_matches_a_simulation_of_the_test() -> None:
    from scipy import stats

    from loop.experiment.sweep.power import detect_power

    rng = np.random.default_rng(1)
    n, sd, effect = 8, 0.05, 0.04
    d = rng.normal(effect, sd, size=(20000, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / np.sqrt(n))
    assert detect_power(n, sd, effect) == pytest.approx(
        float((abs(t) > stats.t.ppf(0.975, n - 1)).mean()), abs=0.01
    )
    assert detect_power(n, sd, 0.0) == pytest.approx(0.05, abs=1e-9)  # no effect: the test's level


def test_the_sequential_design_is_sized_from_a_runs_variance(capsys) -> None:
    assert (
        main(["--from", str(ROOT / "docs" / "experiment-standard-run.json"), "--design", "sequential"]) == 0
    )
    out = capsys.readouterr().out
    assert "SD of I, a difference of two such contrasts taken as independent" in out and "8 seeds:" in out


def test_two_sided_power_far_in_the_tail_is_a_number() -> None:
    from loop.experiment.sweep.power import detect_power

    assert detect_power(32, 0.0585, 0.10) == pytest.approx(1.0)  # scipy's lower tail is nan there
    assert detect_power(8, 0.05, -0.04) == pytest.approx(detect_power(8, 0.05, 0.04))
