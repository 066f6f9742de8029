"""The sweep's learned selection RM draws: draw 0 is the world's selection RM (which loop.demo keeps in the model
cache, its seed labels beside it); seed s > 0 trains MiniLM on those seed labels with training seed s, once, and
reports its agreement with the verifier on the seed pool's own constraints."""

from __future__ import annotations

import json
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
