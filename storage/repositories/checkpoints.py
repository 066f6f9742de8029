"""Repository for policy checkpoints: the initial policy's stable id and row, the latest trained checkpoint."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Checkpoint
from storage.upsert import upsert


def _model_ref(model: str) -> str:
    """A local directory as its absolute path (one dir reached by two paths is one policy); else the id."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def initial_checkpoint_id(model: str) -> str:
    """Stable id of the initial policy `model` (hub id or local dir): readable name plus a hash of the ref."""
    ref = _model_ref(model)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", ref.rstrip("/").rsplit("/", 1)[-1])[:80] or "model"
    return f"init-{name}-{hashlib.sha256(ref.encode('utf-8')).hexdigest()[:12]}"


def ensure_initial_checkpoint(session: Session, model: str) -> str:
    """Create (once) the checkpoint row of the initial policy and return its id."""
    checkpoint_id = initial_checkpoint_id(model)
    ensure_checkpoint(session, checkpoint_id, _model_ref(model))
    return checkpoint_id


def ensure_checkpoint(session: Session, checkpoint_id: str, path: str) -> None:
    """Create (once) the row of an untrained checkpoint (no labels behind it); an existing row is kept."""
    upsert(session, Checkpoint, [{"id": checkpoint_id, "path": path, "label_count": 0}])


def put_trained_checkpoint(
    session: Session,
    checkpoint_id: str,
    *,
    path: str,
    base_id: str,
    round_id: int,
    label_count: int,
    data_hash: str,
) -> None:
    """Record the checkpoint a round's training produced (a row of the same id is replaced: a re-run after a
    crash registers the directory it finds); flushed, so a training run may refer to it."""
    session.merge(
        Checkpoint(
            id=checkpoint_id,
            path=path,
            base_id=base_id,
            round_id=round_id,
            label_count=label_count,
            data_hash=data_hash,
        )
    )
    session.flush()


def get_checkpoint(session: Session, checkpoint_id: str) -> Checkpoint | None:
    return session.get(Checkpoint, checkpoint_id)


def latest_checkpoint(session: Session) -> Checkpoint | None:
    """The newest checkpoint produced by training (the initial policy does not count)."""
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.round_id.is_not(None))
        .order_by(Checkpoint.created_at.desc())
        .limit(1)
    )
