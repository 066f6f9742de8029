"""The sweep's learned selection RM draws: draw 0 is the world's selection RM (which loop.demo keeps in the model
cache, its seed labels beside it); seed s > 0 trains MiniLM on those seed labels with training seed s, once, and
reports its agreement with the verifier on the seed pool's own constraints."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from loop.experiment.runner import ExperimentError
from loop.experiment.sweep.selection_rms import learned_rm_dir, train_learned_rm

pytestmark = pytest.mark.slow

CONSTRAINT = {"kind": "keyword", "word": "important"}


def _world(tmp_path: Path) -> tuple[Path, Path]:
    """A sweep's data dir and its world's selection RM, laid out as loop.demo leaves them."""
    data = tmp_path / "sweep"
    (data / "prompts").mkdir(parents=True)
    world_rm = tmp_path / "models" / "demo-selection-rm" / "sweep-0123456789ab"
    world_rm.parent.mkdir(parents=True)
    prompts = [f"Write a very short answer about topic {i}. Include the word important." for i in range(12)]
    (data / "prompts" / "seed.jsonl").write_text(
        "".join(json.dumps({"prompt": p, "metadata": {"constraints": [CONSTRAINT]}}) + "\n" for p in prompts)
    )
    pairs = [
        {"prompt": p, "chosen": f"This is important for fact {i}.", "rejected": f"Just a fact {i}."}
        for i, p in enumerate(prompts)
    ]
    (world_rm.parent / f"{world_rm.name}-seed-labels.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in pairs)
    )
    return data, world_rm


def test_another_learned_rm_draw_is_trained_once_and_judged_on_the_seed_pool(tmp_path: Path, caplog) -> None:
    data, world_rm = _world(tmp_path)
    models = tmp_path / "models"
    assert (
        train_learned_rm(data, models, 0, max_length=64, world_rm=world_rm) == world_rm
    )  # draw 0: the world's
    with caplog.at_level("INFO", logger="loop.experiment.sweep.selection_rms"):
        out = train_learned_rm(data, models, 1, max_length=64, world_rm=world_rm)
    assert out == learned_rm_dir(data, 1) and (out / "config.json").exists()
    line = next(r.getMessage() for r in caplog.records if "learned RM seed 1" in r.getMessage())
    assert "agreement with the verifier None" not in line and "seed pairs" in line
    stamp = (out / "config.json").stat().st_mtime_ns
    assert train_learned_rm(data, models, 1, max_length=64, world_rm=world_rm) == out
    assert (out / "config.json").stat().st_mtime_ns == stamp  # kept, not trained again


def test_a_world_rm_without_its_seed_labels_is_refused_naming_the_file(tmp_path: Path) -> None:
    data, world_rm = _world(tmp_path)
    labels = world_rm.parent / f"{world_rm.name}-seed-labels.jsonl"
    labels.unlink()
    with pytest.raises(ExperimentError, match="seed-labels.jsonl: the seed labels of"):
        train_learned_rm(data, tmp_path / "models", 2, max_length=64, world_rm=world_rm)
    assert not learned_rm_dir(data, 2).exists()


def test_sweep_jobs_train_the_missing_draws_in_pinned_workers(tmp_path: Path, capfd) -> None:
    """`sweep run --jobs 2` trains the learned-RM draws in two worker processes, one core each, before scoring;
    each draw once (draw 0 is the world's; a trained draw is not trained again)."""
    import dataclasses

    from loop.config import load_config
    from loop.experiment.sweep.cells import TINY
    from loop.experiment.sweep.run import FACTS, _train_draws_in_workers, draws_to_train

    data, world_rm = _world(tmp_path)
    config = tmp_path / "sweep.toml"
    config.write_text(f'[reward]\nmodel = "{world_rm}"\nmax_length = 64\n')
    (data / FACTS).parent.mkdir(parents=True)
    (data / FACTS).write_text(json.dumps({"config": str(config)}))
    p = dataclasses.replace(TINY, learned=True, seeds=(0, 1, 2))
    assert draws_to_train(data, p) == [1, 2]

    _train_draws_in_workers(data, load_config(config), p, tmp_path / "models", 2, say=print)
    out = capfd.readouterr().out
    assert "[sweep] training 2 learned-RM draws in 2 workers" in out
    assert draws_to_train(data, p) == [] and all(
        (learned_rm_dir(data, s) / "config.json").exists() for s in (1, 2)
    )
    trained = re.findall(r"\[sweep draws\] learned RM seed (\d) in \d+ s \(core\(s\) ([\d,]+)\)", out)
    assert sorted(s for s, _ in trained) == ["1", "2"]
    assert len(os.sched_getaffinity(0)) < 2 or trained[0][1] != trained[1][1]  # each on its own core
