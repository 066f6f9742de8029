"""Both ways a reward model is trained, `pvar-loop reward-model train` and a round's refresh, reuse a checkpoint
directory only when its meta file records the same data hash, and treat a directory they cannot reuse alike:
refused with an error that names what is wrong with it, the directory left as it was, nothing trained.

No model is loaded: every case here is refused before training would start."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from loop.cli.app import main
from loop.config import load_config
from loop.ml.reward_model import (
    REWARD_META_FILE,
    RewardTrainResult,
    reward_data_hash,
    split_pairs,
)
from loop.rounds.reward_refresh import refresh_round, reward_train_settings
from storage.errors import PvarLoopError
from storage.models import AnnotationItem, RewardRefresh
from storage.repositories.items import decided_items
from tests.support.annotation_setup import make_round_items

CORRUPT = '{"result": {"data_hash": '  # cut off mid-write, or edited by hand


@pytest.fixture
def project(tmp_path, sqlite_url, uow):
    """A config whose refresh runs on 24 decided a/b items of production round 1 (no real model needed)."""
    base = tmp_path / "base-rm"
    base.mkdir()
    path = tmp_path / "pvar-loop.toml"
    path.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n[database]\nurl = "{sqlite_url}"\n'
        f'[reward]\nmodel = "{base}"\nrefresh = "every_round"\n'
        "[reward_training]\nheldout_fraction = 0.25\nrefresh_min_heldout = 1\n"
    )
    items = make_round_items(uow, 24)
    with uow() as s:
        for item in s.scalars(select(AnnotationItem)):
            item.status, item.decision = "decided", "a"
    return path, load_config(path, env={}), items.round_id


def _cli(path: Path, cfg, capsys) -> tuple[Path, Callable[[], str]]:
    """The directory `reward-model train --out DIR` writes, and the command as a function -> error text."""
    out = cfg.paths.data_dir / "reward-models" / "rm-chosen"

    def run() -> str:
        assert main(["--config", str(path), "reward-model", "train", "--out", str(out)]) == 2
        return capsys.readouterr().err

    return out, run


def _refresh(path: Path, cfg, uow, capsys, round_id: int) -> tuple[Path, Callable[[], str]]:
    """The candidate directory round 1's refresh trains into, and the refresh as a function -> error text."""
    with uow() as s:
        pairs = decided_items(s)
    train, heldout = split_pairs(pairs, cfg.reward_training.heldout_fraction)
    assert heldout
    settings = reward_train_settings(cfg, heldout_fraction=0.0)
    digest = reward_data_hash(train, cfg.reward.model, settings)
    out = (cfg.paths.data_dir / "reward-models" / f"refresh-r1-{digest[:12]}").resolve()

    def run() -> str:
        with pytest.raises(PvarLoopError) as caught:
            refresh_round(cfg, uow, round_id)
        with uow() as s:
            assert s.scalars(select(RewardRefresh)).all() == []  # nothing recorded: the step can be redone
        return str(caught.value)

    return out, run


ENTRY_POINTS = ("cli", "refresh")


def _entry(name, project, uow, capsys):
    path, cfg, round_id = project
    if name == "cli":
        return _cli(path, cfg, capsys)
    return _refresh(path, cfg, uow, capsys, round_id)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_corrupt_meta_file_is_refused_naming_the_file(entry, project, uow, capsys):
    out, run = _entry(entry, project, uow, capsys)
    out.mkdir(parents=True)
    (out / REWARD_META_FILE).write_text(CORRUPT)
    (out / "model.safetensors").write_bytes(b"weights someone may be selecting with")
    before = _snapshot(out)

    message = run()

    assert str(out / REWARD_META_FILE) in message, message  # the file at fault, not just "some directory"
    assert "not a readable" in message and "move it away" in message, message
    assert _snapshot(out) == before  # neither overwritten nor trained around
    assert [p.name for p in out.parent.iterdir()] == [out.name]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_directory_trained_on_other_labels_is_refused(entry, project, uow, capsys):
    out, run = _entry(entry, project, uow, capsys)
    out.mkdir(parents=True)
    other = RewardTrainResult(out, 1, 1.0, 1.0, None, 3, 0, data_hash="f" * 64)
    (out / REWARD_META_FILE).write_text(json.dumps({"result": other.to_dict()}))
    before = _snapshot(out)

    message = run()

    assert str(out) in message and "was not trained on these labels" in message, message
    assert "ffffffffffff" in message and "move it away" in message, message
    assert _snapshot(out) == before
    assert [p.name for p in out.parent.iterdir()] == [out.name]
