"""Files only their owner may read (mode 600): the project database (it holds the swap flags, rewards and audit
flags annotators must not see) and configs that may hold an API key or a database password."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE = 0o600


def create_private(path: Path) -> None:
    """Create `path` empty with mode 600 unless it exists, so what later writes it (SQLite, with its -wal and
    -shm files, which take the database file's mode) never makes it readable by others, not even briefly."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))


def write_private_text(path: Path, text: str) -> None:
    """Replace `path` with `text`, mode 600 from the first byte (written to a sibling, then renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), PRIVATE)  # a leftover tmp file keeps its old mode through O_CREAT
        f.write(text)
    os.replace(tmp, path)
