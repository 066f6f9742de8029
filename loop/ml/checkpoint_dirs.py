"""Train -> save -> publish: how DPO and reward-model training turn a trained model into a checkpoint directory.

A checkpoint is written into a hidden sibling scratch dir, gets a meta JSON saying what produced it, and is
renamed into place: readers never see half a checkpoint, an existing one is never overwritten, and a re-run
can read the meta instead of retraining. A killed process leaves its ".<name>.partial-*" sibling behind: each
scratch dir is flock()ed while in use (the kernel drops the lock when its process dies), and the next training
that starts in the same directory removes every unlocked one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRAINER_SUBDIR = "trainer"  # the trainer's own output_dir inside the scratch dir (logs, nothing we keep)
CHECKPOINT_SUBDIR = "checkpoint"
PARTIAL_MARK = ".partial-"
# A scratch dir is unlocked for the instant between mkdtemp and flock: younger unlocked ones are left alone.
STALE_AFTER_SECONDS = 60.0


def claim_output_dir(output_dir: str | os.PathLike, who: str) -> Path:
    """output_dir as a Path, its parent created; FileExistsError, before any work, if it already exists."""
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{who}: checkpoint directory {output_dir} already exists; not overwriting it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch_dirs(output_dir.parent)
    return output_dir


@contextmanager
def scratch_dir(output_dir: Path) -> Iterator[Path]:
    """A hidden temp dir next to output_dir (same filesystem, so the final rename is atomic), locked while in
    use; removed on exit."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}{PARTIAL_MARK}", dir=output_dir.parent))
    fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        os.close(fd)


def remove_stale_scratch_dirs(parent: Path) -> list[Path]:
    """Remove the ".<name>.partial-*" dirs in `parent` that no live process holds (left by killed trainings,
    or by versions that did not lock them); returns the removed paths."""
    removed = []
    for path in sorted(parent.glob(f".*{PARTIAL_MARK}*")):
        if not path.is_dir() or path.is_symlink() or _in_use(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d scratch dir(s) of interrupted trainings in %s", len(removed), parent)
    return removed


def _in_use(scratch: Path) -> bool:
    try:
        if time.time() - scratch.stat().st_mtime < STALE_AFTER_SECONDS:
            return True  # perhaps created an instant ago and not locked yet
        fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return True  # vanished meanwhile, or unreadable: not ours to remove
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor drops a lock taken here
    return False


def trainer_dir(scratch: Path) -> str:
    """Where the trainer may write its own files (the TRL config's output_dir)."""
    return str(scratch / TRAINER_SUBDIR)


def save_checkpoint(model: Any, tokenizer: Any, scratch: Path) -> Path:
    """Save model and tokenizer into the scratch dir (dropping the trainer's files first); returns the
    checkpoint directory, not yet published."""
    shutil.rmtree(scratch / TRAINER_SUBDIR, ignore_errors=True)
    checkpoint = scratch / CHECKPOINT_SUBDIR
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    return checkpoint


def publish_checkpoint(
    checkpoint: Path, output_dir: Path, meta_file: str, meta: dict[str, Any], who: str
) -> None:
    """Write the meta JSON into a fully saved checkpoint, then move it into place as output_dir."""
    (checkpoint / meta_file).write_text(json.dumps(meta, indent=2, sort_keys=True))
    move_into_place(checkpoint, output_dir, who)


def read_checkpoint_meta(checkpoint_dir: str | os.PathLike, meta_file: str) -> dict[str, Any]:
    """The meta JSON publish_checkpoint wrote (OSError / ValueError when missing or unreadable)."""
    meta = json.loads((Path(checkpoint_dir) / meta_file).read_text())
    if not isinstance(meta, dict):
        raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
    return meta


def move_into_place(checkpoint: Path, output_dir: Path, who: str) -> None:
    """Publish a fully written checkpoint directory: rename() of a directory is atomic on POSIX and fails if the
    target appeared meanwhile, so readers never see half a checkpoint and nothing is overwritten."""
    try:
        Path(checkpoint).rename(output_dir)
    except OSError as e:
        raise FileExistsError(f"{who}: cannot move checkpoint into {output_dir}: {e}") from e
