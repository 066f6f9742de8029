"""The sweep's learned selection RM draws: seed s > 0 trains MiniLM on the world's seed labels with training
seed s, once, and reports its agreement with the verifier on the seed pool's own constraints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.experiment.selection_rms import learned_rm_dir, train_learned_rm

pytestmark = pytest.mark.slow

CONSTRAINT = {"kind": "keyword", "word": "important"}


def _world(tmp_path: Path) -> Path:
    data = tmp_path / "sweep"
    (data / "prompts").mkdir(parents=True)
    (data / "reward-models").mkdir()
    prompts = [f"Write a very short answer about topic {i}. Include the word important." for i in range(12)]
    (data / "prompts" / "seed.jsonl").write_text(
        "".join(json.dumps({"prompt": p, "metadata": {"constraints": [CONSTRAINT]}}) + "\n" for p in prompts)
    )
    pairs = [
        {"prompt": p, "chosen": f"This is important for fact {i}.", "rejected": f"Just a fact {i}."}
        for i, p in enumerate(prompts)
    ]
    (data / "reward-models" / "seed-rm-seed-labels.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in pairs)
    )
    return data


def test_another_learned_rm_draw_is_trained_once_and_judged_on_the_seed_pool(tmp_path: Path, caplog) -> None:
    data = _world(tmp_path)
    with caplog.at_level("INFO", logger="loop.experiment.selection_rms"):
        out = train_learned_rm(data, tmp_path / "models", 1, max_length=64)
    assert out == learned_rm_dir(data, 1) and (out / "config.json").exists()
    line = next(r.getMessage() for r in caplog.records if "learned RM seed 1" in r.getMessage())
    assert "agreement with the verifier None" not in line and "seed pairs" in line
    stamp = (out / "config.json").stat().st_mtime_ns
    assert train_learned_rm(data, tmp_path / "models", 1, max_length=64) == out
    assert (out / "config.json").stat().st_mtime_ns == stamp  # kept, not trained again
