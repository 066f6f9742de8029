"""`pvar-loop sweep` end to end on tiny real models: every cell of the grid runs through the real round state
machine (selection, simulated annotator, TRL DPO, multi-sample evaluation), a time-boxed run resumes without
redoing anything, and the report is recomputed from the evaluation samples stored in the database."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from loop.acquisition.strategies import Strategy
from loop.cli.app import main
from loop.config import load_config
from loop.experiment.sweep.cells import TINY, Cell, cells
from storage.db import UnitOfWork, make_engine
from storage.migrate import current_revision, downgrade, head_revision
from storage.models import Evaluation, EvaluationSample, Round

pytestmark = pytest.mark.slow


def _sweep(tmp_path: Path, *args: str) -> int:
    return main(
        [
            "sweep",
            "run",
            "--profile",
            "tiny",
            "--data-dir",
            str(tmp_path / "sweep"),
            "--model-cache",
            str(tmp_path / "models"),
            *args,
        ]
    )


def _config(tmp_path: Path):
    facts = json.loads((tmp_path / "sweep" / "experiment" / "sweep.json").read_text())
    return load_config(Path(facts["config"]))


def _uow(tmp_path: Path) -> UnitOfWork:
    return UnitOfWork(make_engine(_config(tmp_path).database_url))


def _snapshot(uow: UnitOfWork) -> dict:
    with uow() as session:
        rounds = {r.arm: (r.id, str(r.status), r.policy_out) for r in session.scalars(select(Round))}
        evals = session.scalar(select(func.count()).select_from(Evaluation))
        samples = session.scalar(select(func.count()).select_from(EvaluationSample))
    return {"rounds": rounds, "evaluations": evals, "samples": samples}


def test_tiny_sweep_runs_resumes_and_reports_from_the_database(tmp_path: Path, capsys) -> None:
    grid = [c.arm for c in cells(TINY)]
    assert _sweep(tmp_path, "--max-cells", "3") == 0
    uow = _uow(tmp_path)
    first = _snapshot(uow)
    assert len(first["rounds"]) == 3 and all(s == "done" for _, s, _ in first["rounds"].values())
    assert list(first["rounds"]) == sorted(grid[:3]) or set(first["rounds"]) == set(grid[:3])

    # Without --resume an existing sweep is never overwritten; the error names the option.
    assert _sweep(tmp_path) == 2
    assert "--resume" in capsys.readouterr().err

    assert _sweep(tmp_path, "--resume") == 0
    done = _snapshot(uow)
    assert set(done["rounds"]) == set(grid)
    assert all(s == "done" for _, s, _ in done["rounds"].values())
    for arm in grid[:3]:
        assert done["rounds"][arm] == first["rounds"][arm]  # resumed, not redone

    # Evidence: per evaluated cell, eval prompts x samples policy rows; the reference sampled once.
    with uow() as session:
        n_eval = TINY.world.n_eval
        evaluated = [e for e in session.scalars(select(Evaluation))]
        per_side = dict(
            session.execute(select(EvaluationSample.side, func.count()).group_by(EvaluationSample.side)).all()
        )
    assert per_side["policy"] == len(evaluated) * n_eval * TINY.samples_per_prompt
    assert per_side["reference"] == n_eval * TINY.samples_per_prompt

    # Idempotent: a second --resume runs nothing; it also brings a sweep made by an older schema to head.
    engine = make_engine(_config(tmp_path).database_url)
    downgrade(engine, "0004")
    assert _sweep(tmp_path, "--resume") == 0
    assert current_revision(engine) == head_revision()
    assert _snapshot(uow) == done

    out = tmp_path / "docs" / "results.md"
    assert main(["sweep", "report", "--data-dir", str(tmp_path / "sweep"), "--out", str(out)]) == 0
    text = out.read_text()
    analysis = json.loads(out.with_suffix(".json").read_text())["analysis"]
    for png in ("results-curve.png", "results-rm-quality.png"):
        assert (out.parent / "img" / png).stat().st_size > 1000
        assert f"img/{png}" in text

    def mean_of(rows) -> float:
        by_prompt: dict[str, list[float]] = {}
        for pid, score in rows:
            by_prompt.setdefault(pid, []).append(score)
        return float(np.mean([np.mean(v) for v in by_prompt.values()]))

    # The report's numbers are the stored samples' numbers: recompute each curve point from the rows. A cell
    # that trained nothing has no evaluation of its own: it is excluded (and named), never scored with the
    # reference side's samples.
    with uow() as session:
        sample = select(EvaluationSample.prompt_id, EvaluationSample.score)
        initial = mean_of(session.execute(sample.where(EvaluationSample.side == "reference")).all())
        cell_means = {}
        for arm, (_, _, policy_out) in done["rounds"].items():
            ev = session.scalar(select(Evaluation).where(Evaluation.checkpoint_id == policy_out))
            if ev is not None:
                rows = session.execute(
                    sample.where(EvaluationSample.evaluation_id == ev.id, EvaluationSample.side == "policy")
                ).all()
                cell_means[Cell.parse(arm)] = mean_of(rows)
    assert cell_means, "no cell of the tiny sweep trained: nothing to check"
    assert set(analysis["excluded"]) == {arm for arm in grid if Cell.parse(arm) not in cell_means}
    for strategy, points in analysis["curve"].items():
        for point in points:
            means = [
                m
                for c, m in cell_means.items()
                if (c.rm, str(c.strategy), c.budget) == (TINY.curve_rm, strategy, point["budget"])
            ]
            assert point["mean"] == pytest.approx(float(np.mean(means)))
    paired = {
        c.budget
        for c in cell_means
        if c.strategy == "pvar" and Cell(c.rm, Strategy.RANDOM, c.seed, c.budget) in cell_means
    }
    assert {d["budget"] for d in analysis["differences"]} == paired
    done_labels = {
        row.split(",")[0]: int(row.split(",")[7])
        for row in out.with_suffix(".csv").read_text().splitlines()[1:]
    }
    assert analysis["initial_mean"] == pytest.approx(initial)

    # The mechanism: every labelled pick of the curve RM's largest-budget cells gets its DPO gradient norm at
    # the initial policy (0 for a tie), every pool prompt's shown pair too; the report then shows them.
    assert main(["sweep", "mechanism", "--data-dir", str(tmp_path / "sweep"), "--seeds", "0,1"]) == 0
    mech = (tmp_path / "sweep" / "experiment" / "mechanism.csv").read_text().splitlines()[1:]
    picks = [r.split(",") for r in mech if r.startswith("pick,")]
    top = [c for c in map(Cell.parse, grid) if c.budget == TINY.budgets[-1]]
    assert len(picks) == sum(done_labels[c.arm] for c in top)
    assert all(float(r[9]) == 0.0 for r in picks if r[8] == "0")  # ties: no gradient
    assert any(r.startswith("pool,") for r in mech)
    assert main(["sweep", "report", "--data-dir", str(tmp_path / "sweep"), "--out", str(out)]) == 0
    assert "## The mechanism" in out.read_text()
    assert out.with_name("results-mechanism.csv").is_file()

    # Anyone can redo the analysis: a sweep moved elsewhere reports from its own database, with the same numbers.
    uow.engine.dispose()
    engine.dispose()
    moved = tmp_path / "elsewhere" / "sweep"
    shutil.move(tmp_path / "sweep", moved)
    again = tmp_path / "again" / "results.md"
    assert main(["sweep", "report", "--data-dir", str(moved), "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()

    # ... and from the per-prompt table written beside the document alone, byte for byte.
    table = out.with_suffix(".csv")
    assert table.read_bytes() == again.with_suffix(".csv").read_bytes()
    shutil.rmtree(moved)
    from_table = tmp_path / "from-table" / "results.md"
    assert main(["sweep", "report", "--from-table", str(table), "--out", str(from_table)]) == 0
    assert from_table.read_bytes() == out.read_bytes()


def test_report_without_a_sweep_names_the_directory(tmp_path: Path, capsys) -> None:
    assert (
        main(["sweep", "report", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "r.md")]) == 2
    )
    err = capsys.readouterr().err
    assert str(tmp_path / "none") in err and "sweep run" in err
    assert not (tmp_path / "r.md").exists()


def test_jobs_split_the_cells_over_worker_processes(tmp_path: Path, capfd, monkeypatch) -> None:
    """--jobs 2: the first cell runs here (it samples the reference answers every cell reuses), the rest in
    two worker processes, each pinned to its own core; every cell runs exactly once, the facts record the
    jobs, and the parent holds no generation engine (nor its KV cache) while its workers run."""
    from loop.experiment.sweep import run as sweep_run
    from loop.ml import vllm_engine

    held: list[int] = []
    opened: list[str] = []
    wait_all, open_engine = sweep_run.wait_all, vllm_engine.open_engine

    def wait_and_count(workers, on_tick=None, tick_s: float = 60.0):
        held.append(vllm_engine.open_engine_count())
        return wait_all(workers, on_tick, tick_s)

    def open_and_note(model, **kwargs):
        opened.append(str(model))
        return open_engine(model, **kwargs)

    monkeypatch.setattr(sweep_run, "wait_all", wait_and_count)
    monkeypatch.setattr(vllm_engine, "open_engine", open_and_note)
    # vLLM for the tiny model in this process (the first cell, as with the real model), not in the workers
    monkeypatch.setattr("loop.ml.generation.AUTO_VLLM_MIN_PARAMS", 0)
    grid = [c.arm for c in cells(TINY)]
    assert _sweep(tmp_path, "--jobs", "2") == 0
    assert opened  # the first cell sampled with vLLM here: the parent had an engine to give back
    assert held == [0]  # one worker phase (the tiny grid has no learned-RM draws), no engine held through it
    out = capfd.readouterr().out
    assert "[sweep] 2 workers, 1 thread(s) each" in out or "[sweep] 2 workers," in out
    pinned = re.findall(r"\[sweep \d/2\] on core\(s\) ([\d,]+)", out)
    assert len(pinned) == 2 and not set(pinned[0].split(",")) & set(pinned[1].split(","))
    assert f"sweep: {len(grid)} of {len(grid)} cells done" in out
    with _uow(tmp_path)() as session:
        arms = [r.arm for r in session.scalars(select(Round))]
        references = session.scalar(
            select(func.count()).select_from(EvaluationSample).where(EvaluationSample.side == "reference")
        )
    assert sorted(arms) == sorted(grid)  # each cell once
    assert references == TINY.world.n_eval * TINY.samples_per_prompt  # the reference sampled once
    facts = json.loads((tmp_path / "sweep" / "experiment" / "sweep.json").read_text())
    assert facts["jobs"] == 2


def test_bad_shard_is_refused_naming_the_option(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        _sweep(tmp_path, "--shard", "2/2")
    assert "--shard" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_stopping_the_parent_stops_its_workers(tmp_path: Path) -> None:
    """`kill <parent PID>` on `sweep run --jobs 2` (an operator stopping a long run) ends the worker processes
    too; before, they went on as orphans holding the cores."""
    cmd = [sys.executable, "-m", "loop.cli", "sweep", "run", "--profile", "tiny", "--jobs", "2"]
    cmd += ["--data-dir", str(tmp_path / "sweep"), "--model-cache", str(tmp_path / "models")]
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        parent = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 600
        while len(workers) < 2 and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            workers = _children(parent.pid)
        assert len(workers) == 2, log.read_text()[-3000:]
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=120) != 0
        assert not [w for w in workers if _alive(w)]
    finally:
        if parent.poll() is None:
            parent.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
