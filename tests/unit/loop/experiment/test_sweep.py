"""The RM-quality sweep's pure parts: stand-in RMs of calibrated agreement, the cell grid, the statistics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loop.acquisition.strategies import Strategy
from loop.experiment.standin import (
    StandInError,
    StandInRewardModel,
    expected_agreement,
    gold_gaps,
    measured_agreement,
    noise_for_agreement,
)
from loop.experiment.sweep.analysis import analyse
from loop.experiment.sweep.cells import PREREGISTERED, STANDARD, TINY, Cell, cells
from loop.experiment.sweep.data import CellResult
from loop.experiment.sweep.profiles import SweepProfileError


def _gold(prompt: str, response: str) -> float:
    return float(response.count("x")) / 4


@pytest.mark.parametrize("target", [0.6, 0.75, 0.9])
def test_standin_noise_is_calibrated_to_the_target_agreement(target: float) -> None:
    rng = np.random.default_rng(0)
    samples = {
        f"p{i}": [("x" * int(rng.integers(0, 5)) + f"-{j}", 0.0) for j in range(4)] for i in range(300)
    }
    gaps = gold_gaps([[_gold(p, t) for t, _ in rows] for p, rows in samples.items()])
    sigma = noise_for_agreement(gaps, target)
    assert expected_agreement(gaps, sigma) == pytest.approx(target, abs=1e-6)
    measured = []
    for seed in range(5):  # one draw varies by ~0.015 around the target (pairs share noise terms)
        rm = StandInRewardModel(_gold, sigma=sigma, seed=seed, model_id="s")
        scored = {
            p: list(zip([t for t, _ in rows], rm.score([p] * len(rows), [t for t, _ in rows]), strict=True))
            for p, rows in samples.items()
        }
        agreement, n = measured_agreement(scored, _gold)
        assert n == gaps.size
        measured.append(agreement)
    assert np.mean(measured) == pytest.approx(target, abs=0.02)


def test_standin_scores_are_deterministic_per_seed_and_differ_across_seeds() -> None:
    a = StandInRewardModel(_gold, sigma=0.5, seed=0, model_id="a").score(["p", "q"], ["xx", "x"])
    again = StandInRewardModel(_gold, sigma=0.5, seed=0, model_id="a").score(["p", "q"], ["xx", "x"])
    other = StandInRewardModel(_gold, sigma=0.5, seed=1, model_id="a").score(["p", "q"], ["xx", "x"])
    assert np.array_equal(a, again)
    assert not np.allclose(a, other)


@pytest.mark.parametrize("target", [0.5, 1.0, 0.3])
def test_standin_agreement_out_of_range_is_an_error(target: float) -> None:
    with pytest.raises(StandInError, match="agreement must be in"):
        noise_for_agreement(np.array([0.5]), target)


def test_standin_without_distinguishable_pairs_is_an_error() -> None:
    with pytest.raises(StandInError, match="no sample pair"):
        noise_for_agreement(gold_gaps([[0.5, 0.5, 0.5]]), 0.75)


def test_cell_names_round_trip_and_other_arms_are_not_cells() -> None:
    c = Cell("standin-0.75", Strategy.PVAR, 2, 64)
    assert Cell.parse(c.arm) == c
    assert Cell.parse("random-s0") is None
    assert Cell.parse("main") is None
    assert Cell.parse("bogus.x.s1.b2") is None


def test_cells_run_the_headline_first_and_cover_the_grid() -> None:
    grid = list(cells(STANDARD))
    top = STANDARD.budgets[-1]
    n_rms = len(STANDARD.rm_keys)
    per = len(STANDARD.seeds) * 2
    assert len(grid) == len(set(grid)) == n_rms * per + (len(STANDARD.budgets) - 1) * per
    assert all(c.budget == top for c in grid[: n_rms * per])
    assert {c.rm for c in grid[n_rms * per :]} == {STANDARD.curve_rm}
    assert grid[0].rm == STANDARD.curve_rm


def test_profile_validation_names_the_bad_setting() -> None:
    with pytest.raises(SweepProfileError, match="curve_rm"):
        dataclasses.replace(TINY, curve_rm="learned")
    with pytest.raises(SweepProfileError, match="budgets"):
        dataclasses.replace(TINY, budgets=(4, 2))


def _result(rm: str, strategy: Strategy, seed: int, budget: int, means: dict[str, float]) -> CellResult:
    return CellResult(
        Cell(rm, strategy, seed, budget), "done", budget, budget // 2, budget // 2, True, means, 0.5, 1.0
    )


def _world(pvar_level, random_level, prompts=40, seeds=3, budgets=(8, 16, 32, 64), noise=0.0):
    rng = np.random.default_rng(1)
    out = []
    for s in range(seeds):
        for b in budgets:
            for strategy, level in ((Strategy.PVAR, pvar_level), (Strategy.RANDOM, random_level)):
                means = {f"p{i}": level(b) + noise * rng.standard_normal() for i in range(prompts)}
                out.append(_result("rm", strategy, s, b, means))
    return out


def test_constant_gap_gives_a_zero_width_paired_interval() -> None:
    results = _world(lambda b: 0.5 + b / 1000, lambda b: 0.4 + b / 1000)
    a = analyse(results, budgets=(8, 16, 32, 64), curve_rm="rm", agreements={"rm": 0.8}, n_boot=200)
    for d in a["differences"]:
        assert d["mean"] == pytest.approx(0.1)
        assert d["low"] == pytest.approx(0.1) and d["high"] == pytest.approx(0.1)
    assert a["dose_response"] == [d for d in a["differences"] if d["budget"] == 64]


def test_labels_to_reach_interpolates_on_the_pvar_curve() -> None:
    # pvar: 0.30, 0.40, 0.50, 0.60 at 8..64 labels; random reaches 0.45 at 64 -> pvar needs 24 labels
    pvar = {8: 0.3, 16: 0.4, 32: 0.5, 64: 0.6}
    results = _world(lambda b: pvar[b], lambda b: 0.45)
    h = analyse(results, budgets=(8, 16, 32, 64), curve_rm="rm", agreements={}, n_boot=200)["headline"]
    assert h["labels"] == pytest.approx(24.0)
    assert h["low"] == pytest.approx(24.0) and h["high"] == pytest.approx(24.0)
    assert h["share_reached"] == 1.0
    assert h["saving"] == pytest.approx(1 - 24 / 64)


def test_pvar_that_never_reaches_random_says_so() -> None:
    results = _world(lambda b: 0.3, lambda b: 0.5)
    h = analyse(results, budgets=(8, 16, 32, 64), curve_rm="rm", agreements={}, n_boot=200)["headline"]
    assert h["labels"] is None and h["share_reached"] == 0.0


def test_arm_differences_are_paired_by_seed_with_a_t_interval() -> None:
    """Seed s is the same RM draw in both arms: the primary interval is the t interval (n - 1 df) over the
    per-seed differences, the hierarchical bootstrap's beside it. (The old seed-pooled percentile bootstrap
    resampled each arm's seeds independently and gave a much narrower interval over 3 seeds.)"""
    from scipy import stats

    shifts = {0: 0.0, 1: 0.06, 2: -0.03}
    results = []
    for s, shift in shifts.items():
        for strategy, level in ((Strategy.PVAR, 0.5 + shift), (Strategy.RANDOM, 0.48)):
            results.append(
                _result("rm", strategy, s, 64, {f"p{i}": level + 0.01 * (i % 2) for i in range(20)})
            )
    d = analyse(results, budgets=(64,), curve_rm="rm", agreements={"rm": 0.7}, n_boot=300)["differences"][0]
    per_seed = [0.02, 0.08, -0.01]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(per_seed), scale=stats.sem(per_seed))
    assert (d["low"], d["high"]) == pytest.approx((low, high))
    assert d["seeds"] == 3 and d["per_seed"] == pytest.approx({"0": 0.02, "1": 0.08, "2": -0.01})
    assert low < d["boot_low"] < d["boot_high"] < high  # the bootstrap over 3 seeds is the narrower check


def test_a_cell_that_trained_nothing_is_excluded_and_named() -> None:
    results = _world(lambda b: 0.5, lambda b: 0.4, seeds=3, budgets=(64,))
    dropped = dataclasses.replace(results[1], trained=False, means=None, win_rate=None, decided_ab=0)
    a = analyse([*results[:1], dropped, *results[2:]], budgets=(64,), curve_rm="rm", agreements={}, n_boot=50)
    assert a["excluded"] == [dropped.cell.arm]
    assert a["differences"][0]["seeds"] == 2
    from loop.experiment.sweep.report import findings

    assert dropped.cell.arm in " ".join(findings(a, "p"))


def test_decided_pairs_are_compared_with_a_newcombe_interval_and_claimed_only_above_zero() -> None:
    from loop.experiment.sweep.report import findings

    def cells(pvar_decided: int) -> list[CellResult]:
        out = []
        for s in range(3):
            for strategy, decided in ((Strategy.PVAR, pvar_decided), (Strategy.RANDOM, 26)):
                r = _result("rm", strategy, s, 64, {f"p{i}": 0.5 for i in range(5)})
                out.append(dataclasses.replace(r, decided_ab=decided, ties=64 - decided))
        return out

    a = analyse(cells(38), budgets=(64,), curve_rm="rm", agreements={}, n_boot=50)
    (rate,) = a["decided_rates"]
    assert (rate["pvar"], rate["random"]) == (114, 78)
    assert rate["low"] > 0
    assert a["cells"][0]["decided_rate"]["low"] < 114 / 192 < a["cells"][0]["decided_rate"]["high"]
    assert "higher decided rate with: rm (every interval above 0)" in " ".join(findings(a, "p"))
    a = analyse(cells(28), budgets=(64,), curve_rm="rm", agreements={}, n_boot=50)
    assert a["decided_rates"][0]["low"] < 0
    assert "higher decided rate with: no RM" in " ".join(findings(a, "p"))


def test_a_decided_rate_gain_from_one_seed_is_not_claimed_paired_by_seed() -> None:
    """Newcombe's interval takes the 192 labels as independent; one seed's RM draw giving all of PVar's extra
    decided pairs leaves the per-seed differences' t interval across 0, and the gain is not claimed."""
    from loop.experiment.sweep.report import findings

    out = []
    for s, pvar_decided in enumerate((60, 26, 26)):
        for strategy, decided in ((Strategy.PVAR, pvar_decided), (Strategy.RANDOM, 26)):
            r = _result("rm", strategy, s, 64, {f"p{i}": 0.5 for i in range(5)})
            out.append(dataclasses.replace(r, decided_ab=decided, ties=64 - decided))
    a = analyse(out, budgets=(64,), curve_rm="rm", agreements={}, n_boot=50)
    (rate,) = a["decided_rates"]
    assert rate["low"] > 0  # Newcombe, labels pooled
    paired = rate["paired"]
    assert paired["seeds"] == 3 and paired["mean"] == pytest.approx(34 / 64 / 3)
    assert paired["low"] < 0 < paired["high"]
    text = " ".join(findings(a, "p"))
    assert "higher decided rate with: no RM" in text and "paired by seed, t over 3 seeds" in text


def test_findings_call_a_saving_shown_only_when_its_interval_says_so() -> None:
    """The labels-to-reach point estimate alone is never reported as a saving."""
    from loop.experiment.sweep.report import findings

    headline = {"rm": "r", "labels": 38.0, "low": 20.7, "high": None, "random_budget": 64}
    analysis = {"cells": [], "dose_response": [], "eval_prompts": 10, "headline": headline}
    text = " ".join(findings(analysis, "p"))
    assert "41% fewer labels" in text and "a saving is not shown" in text
    headline["high"] = 50.0
    text = " ".join(findings(analysis, "p"))
    assert "interval [20.7, 50.0] below 64" in text and "not shown" not in text
    headline["high"] = 64.0  # reaching random's quality only at random's own budget: no saving claimed
    assert "fewer labels" not in " ".join(findings(analysis, "p"))


def test_variance_components_are_reported_without_a_heuristic_caveat() -> None:
    """Per seed, PVar - random is paired by seed index; its SD between seeds, the prompts' SD and their share
    are numbers in the document, and no sentence depends on a threshold between them."""
    from loop.experiment.sweep.analysis import seed_spread
    from loop.experiment.sweep.report import findings

    shifts = {0: 0.0, 1: 0.06, 2: -0.03}
    results = []
    for s, shift in shifts.items():
        for strategy, level in ((Strategy.PVAR, 0.5 + shift), (Strategy.RANDOM, 0.48)):
            results.append(
                _result("rm", strategy, s, 64, {f"p{i}": level + 0.01 * (i % 2) for i in range(20)})
            )
    x = seed_spread(results, "rm", 64)
    assert x["per_seed"] == pytest.approx({0: 0.02, 1: 0.08, 2: -0.01})
    assert x["between_seeds_sd"] == pytest.approx(np.std([0.02, 0.08, -0.01], ddof=1))
    assert x["prompt_sd"] == pytest.approx(0.0) and x["prompt_share"] == pytest.approx(0.0)
    assert seed_spread(results[:2], "rm", 64) is None  # one seed: no spread to measure
    a = analyse(results, budgets=(64,), curve_rm="rm", agreements={"rm": 0.7}, n_boot=100)
    assert a["variance"] == [x]
    assert "set the intervals' width" not in " ".join(findings(a, "p"))


def test_a_preregistered_contrast_is_paired_by_seed_across_budgets() -> None:
    results = _world(lambda b: 0.4 + b / 640, lambda b: 0.4 + b / 1280, seeds=3, budgets=(32, 64))
    contrast = (("rm", "pvar", 32), ("rm", "random", 64))
    a = analyse(results, budgets=(32, 64), curve_rm="rm", agreements={}, contrasts=[contrast], n_boot=50)
    (c,) = a["contrasts"]
    assert c["a"] == ["rm", "pvar", 32] and c["mean"] == pytest.approx(0.05 - 0.05)
    assert c["seeds"] == 3


def test_the_preregistered_profile_runs_exactly_its_design() -> None:

    grid = list(cells(PREREGISTERED))
    assert len(PREREGISTERED.seeds) >= 16 and len(grid) == 3 * len(PREREGISTERED.seeds)
    assert {(str(c.strategy), c.budget) for c in grid} == {("pvar", 64), ("random", 64), ("pvar", 32)}
    assert {c.rm for c in grid} == {"learned"} and PREREGISTERED.margin == 0.01
    assert PREREGISTERED.primary_facts() == {
        "a": ["learned", "pvar", 32],
        "b": ["learned", "random", 64],
        "margin": 0.01,
    }
    with pytest.raises(SweepProfileError, match="margin"):
        dataclasses.replace(PREREGISTERED, margin=None)


def test_cells_of_several_rounds_and_matched_cells_name_themselves() -> None:
    c = Cell("learned", Strategy.PVAR, 3, 32, rounds=2, matched=True)
    assert c.arm == "pvar-matched.learned.s3.b32.r2" and Cell.parse(c.arm) == c
    assert (c.label, c.labels) == ("pvar-matched-2r", 64)
    assert c.reference == Cell("learned", Strategy.RANDOM, 3, 32, rounds=2)
    standin = Cell("standin-0.75", Strategy.RANDOM, 0, 2, rounds=3)
    assert Cell.parse(standin.arm) == standin and standin.reference is None
    assert Cell.parse("pvar.learned.s1.b32.r1") is None  # one round has no suffix
    assert Cell.parse("pvar.learned.s1.b32.rx") is None


def test_the_sequential_profile_runs_its_design_seed_by_seed() -> None:
    from loop.experiment.sweep.profiles import SEQUENTIAL

    grid = list(cells(SEQUENTIAL))
    per_seed = [(c.label, c.labels) for c in grid if c.seed == 0]
    assert per_seed == [
        ("pvar", 64),
        ("random", 64),
        ("pvar-2r", 64),
        ("random-2r", 64),
        ("pvar-matched-2r", 64),
    ]
    assert len(grid) == 5 * len(SEQUENTIAL.seeds) and SEQUENTIAL.rounds == 2
    assert SEQUENTIAL.world == PREREGISTERED.world  # the pre-registered world: same pool, eval split and RMs
    facts = SEQUENTIAL.contrast_facts()
    assert facts["interactions"] == [
        [
            ["learned", "pvar-2r", 64],
            ["learned", "random-2r", 64],
            ["learned", "pvar", 64],
            ["learned", "random", 64],
        ]
    ]
    assert PREREGISTERED.contrast_facts() == {}


def test_a_grid_entry_that_cannot_run_is_refused_naming_it() -> None:
    with pytest.raises(
        SweepProfileError, match=r"\('pvar-matched', 2, 2\) needs \('random', 2, 2\) before it"
    ):
        dataclasses.replace(TINY, grid=(("pvar-matched", 2, 2), ("random", 2, 2)))
    with pytest.raises(SweepProfileError, match="kind one of pvar, random, pvar-matched"):
        dataclasses.replace(TINY, grid=(("low-pvar", 2),))
    with pytest.raises(SweepProfileError, match="budget among"):
        dataclasses.replace(TINY, grid=(("pvar", 3),))


def test_a_difference_of_contrasts_is_paired_by_seed() -> None:
    """(A - B) - (C - D) per seed: with constant arm levels it is exact, whatever the seed."""
    levels = {"pvar-2r": 0.50, "random-2r": 0.40, "pvar": 0.45, "random": 0.42}
    results = []
    for s in range(4):
        for label, level in levels.items():
            strategy = Strategy.PVAR if label.startswith("pvar") else Strategy.RANDOM
            rounds, budget = (2, 32) if label.endswith("2r") else (1, 64)
            means = {f"p{i}": level + 0.01 * s for i in range(10)}
            results.append(
                CellResult(
                    Cell("rm", strategy, s, budget, rounds), "done", 64, 40 + s, 24 - s, True, means, 0.5, 1.0
                )
            )
    keys = tuple(("rm", label, 64) for label in levels)
    a = analyse(
        results,
        budgets=(32, 64),
        curve_rm="rm",
        agreements={},
        secondary=[(keys[0], keys[1])],
        interactions=[keys],
        n_boot=50,
    )
    (inter,) = a["interactions"]
    assert inter["mean"] == pytest.approx((0.50 - 0.40) - (0.45 - 0.42)) and inter["seeds"] == 4
    (seq,) = a["secondary"]
    assert seq["mean"] == pytest.approx(0.10) and seq["decided"]["a"] == sum(40 + s for s in range(4))
    text = "\n".join(_further_lines(a))
    assert "(Q_pvar-2r(64) - Q_random-2r(64)) - (Q_pvar(64) - Q_random(64)), rm RM: +0.070" in text
    assert "interval above 0" in text


def _further_lines(analysis: dict) -> list[str]:
    from loop.experiment.sweep.report import _further

    return _further(analysis)


def _round(number: int, status: str = "done", policy_in: str = "init", policy_out: str | None = None):
    from types import SimpleNamespace

    from storage.statuses import RoundStatus

    return SimpleNamespace(
        number=number, status=RoundStatus(status), policy_in=policy_in, policy_out=policy_out
    )


def test_a_cell_of_several_rounds_counts_only_when_every_round_is_done() -> None:
    from loop.experiment.sweep.data import cell_outcome

    one = Cell("rm", Strategy.PVAR, 0, 4)
    assert cell_outcome(one, [_round(1, policy_out="c1")]) == ("done", "c1")
    assert cell_outcome(one, [_round(1, policy_out="init")]) == ("done", None)  # trained nothing
    two = Cell("rm", Strategy.PVAR, 0, 2, rounds=2)
    warm = [_round(1, policy_out="c1"), _round(2, policy_in="c1", policy_out="c2")]
    assert cell_outcome(two, warm) == ("done", "c2")
    idle = [_round(1, policy_out="c1"), _round(2, policy_in="c1", policy_out="c1")]
    assert cell_outcome(two, idle) == ("done", "c1")  # round 2 trained nothing: round 1's policy is the end
    late = [_round(1), _round(2, policy_out="c2")]
    assert cell_outcome(two, late) == ("done", "c2")
    assert cell_outcome(two, [_round(1), _round(2)]) == ("done", None)
    # A round-1 checkpoint is not the two-round arm's result.
    assert cell_outcome(two, [_round(1, policy_out="c1")]) == ("round 2: not run", None)
    stopped = [_round(1, policy_out="c1"), _round(2, "cancelled", policy_in="c1")]
    assert cell_outcome(two, stopped) == ("round 2: cancelled", None)
    assert cell_outcome(two, [_round(1, "cancelled")]) == ("round 1: cancelled", None)


def test_a_profile_joins_a_sweep_only_over_the_same_world_and_evaluation(tmp_path) -> None:
    import json

    from loop.experiment.runner import ExperimentError
    from loop.experiment.sweep.profiles import SEQUENTIAL
    from loop.experiment.sweep.run import FACTS, _profile_facts, read_facts, start_or_resume

    base = {"profile": _profile_facts(PREREGISTERED), "config": "c.toml", "data_dir_arg": "d", "policy": "p",
            "selection_rm_training": {}, "machine": "m"}  # fmt: skip
    (tmp_path / FACTS).parent.mkdir(parents=True)
    with pytest.raises(ExperimentError, match="holds no sequential sweep .*sweep-sequential.json is missing"):
        (tmp_path / FACTS).write_text(json.dumps(base))
        read_facts(tmp_path, "sequential")
    other = {**base, "profile": {**base["profile"], "samples_per_prompt": 4}}
    (tmp_path / FACTS).write_text(json.dumps(other))
    with pytest.raises(
        ExperimentError, match=r"samples_per_prompt differ from experiment/sweep.json.*--profile"
    ):
        start_or_resume(tmp_path, SEQUENTIAL, tmp_path / "models", resume=False)
    assert not (tmp_path / FACTS).with_name("sweep-sequential.json").exists()
    (tmp_path / FACTS).write_text(json.dumps(base))
    with pytest.raises(ExperimentError, match="--resume: .* holds no sequential sweep to resume"):
        start_or_resume(tmp_path, SEQUENTIAL, tmp_path / "models", resume=True)
    facts = start_or_resume(tmp_path, SEQUENTIAL, tmp_path / "models", resume=False)
    assert facts["world_of"] == "preregistered" and read_facts(tmp_path, "sequential") == facts
    assert read_facts(tmp_path) == base  # the first profile's facts are its own


def test_waiting_for_workers_ticks_meanwhile_and_names_the_failed_ones() -> None:
    """The parent records its wall time on every tick while workers run, so a run killed outright keeps it."""
    import subprocess
    import sys

    from loop.experiment.sweep.run import wait_all

    ok = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    bad = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    ticks: list[float] = []
    assert wait_all([ok, bad], ticks.append, tick_s=0.05) == [1]
    assert ticks and ticks == sorted(ticks) and ok.returncode == 0
