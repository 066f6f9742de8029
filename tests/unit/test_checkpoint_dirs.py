"""The one train -> save -> publish path of DPO and reward-model checkpoints (no models needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loop.ml.checkpoint_dirs import (
    claim_output_dir,
    publish_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    scratch_dir,
    trainer_dir,
)


class FakePretrained:
    """Stands in for a model or tokenizer: save_pretrained writes one file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def save_pretrained(self, directory: Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"{self.name}.bin").write_text(self.name)


def test_publish_moves_a_saved_checkpoint_with_its_meta_into_place(tmp_path):
    out = claim_output_dir(tmp_path / "runs" / "round-1", "test")
    assert out.parent.is_dir() and not out.exists()
    with scratch_dir(out) as scratch:
        assert scratch.parent == out.parent and scratch.name.startswith(".round-1.partial-")
        Path(trainer_dir(scratch)).mkdir()
        (Path(trainer_dir(scratch)) / "trainer_state.json").write_text("{}")
        checkpoint = save_checkpoint(FakePretrained("model"), FakePretrained("tokenizer"), scratch)
        assert not Path(trainer_dir(scratch)).exists()  # the trainer's files are dropped before saving
        assert not out.exists()  # nothing visible until published
        publish_checkpoint(checkpoint, out, "meta.json", {"steps": 3, "loss": 0.5}, "test")
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "model.bin", "tokenizer.bin"]
    assert read_checkpoint_meta(out, "meta.json") == {"loss": 0.5, "steps": 3}
    assert [p.name for p in out.parent.iterdir()] == ["round-1"]  # the scratch dir is gone


def test_an_existing_checkpoint_is_never_overwritten(tmp_path):
    out = tmp_path / "round-1"
    out.mkdir()
    with pytest.raises(FileExistsError, match=r"train_x: checkpoint directory .*round-1 already exists"):
        claim_output_dir(out, "train_x")
    # a target that appears while training ran: the rename refuses, the scratch dir is still removed
    with scratch_dir(out) as scratch:
        checkpoint = save_checkpoint(FakePretrained("model"), FakePretrained("tokenizer"), scratch)
        (out / "theirs").write_text("kept")
        with pytest.raises(FileExistsError, match="train_x: cannot move checkpoint"):
            publish_checkpoint(checkpoint, out, "meta.json", {}, "train_x")
    assert [p.name for p in out.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["round-1"]


def test_scratch_dir_is_removed_when_training_fails(tmp_path):
    out = claim_output_dir(tmp_path / "round-1", "test")
    with pytest.raises(RuntimeError, match="boom"), scratch_dir(out) as scratch:
        (scratch / "half-written").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_read_checkpoint_meta_refuses_missing_or_malformed_meta(tmp_path):
    with pytest.raises(OSError):
        read_checkpoint_meta(tmp_path, "meta.json")
    (tmp_path / "meta.json").write_text("not json")
    with pytest.raises(ValueError):
        read_checkpoint_meta(tmp_path, "meta.json")
    (tmp_path / "meta.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="JSON object"):
        read_checkpoint_meta(tmp_path, "meta.json")


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_start_removes_the_scratch_dirs_of_killed_trainings_only(tmp_path):
    parent = tmp_path / "checkpoints"
    parent.mkdir()
    # a training SIGKILLed mid-way: its scratch dir (with the trainer's files) outlives it
    code = (
        "import sys, time; from pathlib import Path; from loop.ml.checkpoint_dirs import scratch_dir\n"
        "with scratch_dir(Path(sys.argv[1])) as s:\n"
        "    (s / 'trainer').mkdir(); (s / 'trainer' / 'optimizer.pt').write_bytes(b'x' * 1000)\n"
        "    print(s, flush=True); time.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(parent / "round-1")], stdout=subprocess.PIPE, text=True
    )
    killed = Path(child.stdout.readline().strip())
    child.kill()
    child.wait()
    assert killed.is_dir() and killed.name.startswith(".round-1.partial-")
    _age(killed, 3600)
    # one left by an older pvar-loop (no lock), and what must stay: a checkpoint, other hidden things
    legacy = parent / ".round-0.partial-abc123"
    (legacy / "checkpoint").mkdir(parents=True)
    _age(legacy, 3600)
    (parent / "round-0").mkdir()
    (parent / ".cache").mkdir()
    (parent / ".notes.partial-1").write_text("a file, not a scratch dir")
    with scratch_dir(parent / "round-9") as running:  # a training still running (this process): kept
        _age(running, 3600)
        out = claim_output_dir(parent / "round-2", "test")
        assert out == parent / "round-2" and not out.exists()
        assert sorted(p.name for p in parent.iterdir()) == sorted(
            [".cache", ".notes.partial-1", "round-0", running.name]
        )
    assert sorted(p.name for p in parent.iterdir()) == [".cache", ".notes.partial-1", "round-0"]


def test_a_scratch_dir_just_being_created_is_not_taken_for_a_stale_one(tmp_path):
    """Between mkdtemp and taking its lock a scratch dir is unlocked for an instant: young ones are kept."""
    fresh = tmp_path / ".round-1.partial-new"
    fresh.mkdir()
    claim_output_dir(tmp_path / "round-2", "test")
    assert fresh.is_dir()
