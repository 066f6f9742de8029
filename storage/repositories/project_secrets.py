"""Repository for project secrets (project_secrets). Takes a Session; never commits. The values are drawn by
migration 0015 (secrets.token_hex(32)) and never change: ids keyed with them must stay the same for the
project's life (re-pushes update the same Argilla records)."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy.orm import Session

from storage.models import ProjectSecret

RECORD_IDS = "record_ids"  # keys every id that becomes an Argilla external id


def record_secret(session: Session) -> str:
    """The secret mixed into items', gold records' and eval comparisons' ids."""
    row = session.get(ProjectSecret, RECORD_IDS)
    if row is None:
        raise RuntimeError(
            f"project_secrets has no {RECORD_IDS!r} row: the database was not built by `pvar-loop db upgrade` "
            "(migration 0015_record_secret draws it)"
        )
    return row.value


def keyed_id(secret: str, *parts: str) -> str:
    """HMAC-SHA256 (hex, 64 chars) of the parts, NUL-separated: deterministic for the project, but nobody
    without the secret can recompute it from the parts (e.g. a record's shown texts)."""
    msg = "\x00".join(parts).encode("utf-8")
    return hmac.new(bytes.fromhex(secret), msg, hashlib.sha256).hexdigest()
