"""Converting the packaged models into the model cache: a finished copy is never removed under a reader."""

from __future__ import annotations

from pathlib import Path

from loop.ml.offline_models import _atomic_save


def test_a_copy_finished_meanwhile_by_another_process_is_kept(tmp_path: Path) -> None:
    """Two sweep workers converting at once: the one that finishes second keeps the first one's directory
    (someone may be loading it) and drops its own; before, it deleted that directory to put its own there."""
    target = tmp_path / "model"

    def save(tmp: Path) -> None:
        (tmp / "config.json").write_text("second")
        target.mkdir()  # the other process finishes first
        (target / "config.json").write_text("first")

    assert _atomic_save(target, save) == target
    assert (target / "config.json").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no scratch dir left


def test_a_crashed_conversion_is_redone(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()  # left without config.json by a crash
    (target / "weights.bin").write_text("half")
    _atomic_save(target, lambda tmp: (tmp / "config.json").write_text("new"))
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
