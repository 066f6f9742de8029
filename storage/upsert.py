"""Dialect-aware idempotent writes keyed on a table's named unique constraint (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Session

# SQLite caps bound parameters per statement (32766); stay well below for wide tables.
MAX_PARAMS = 30000


def _conflict_columns(model: type[DeclarativeBase], constraint: str | None) -> list[str]:
    table = model.__table__
    if constraint is None:
        return [c.name for c in table.primary_key.columns]
    for c in table.constraints:
        if isinstance(c, UniqueConstraint) and c.name == constraint:
            return [col.name for col in c.columns]
    raise KeyError(f"{table.name} has no unique constraint named {constraint!r}")


def upsert(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    constraint: str | None = None,
    update: Sequence[str] = (),
) -> int:
    """Insert rows; on a key conflict update `update` columns (or leave the row alone). Returns rows sent."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise NotImplementedError(f"upsert is not implemented for {dialect}")
    keys = _conflict_columns(model, constraint)
    width = max(len(rows[0]), 1)
    step = max(1, MAX_PARAMS // width)
    for start in range(0, len(rows), step):
        stmt = insert(model).values(list(rows[start : start + step]))
        if update:
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        session.execute(stmt)
    return len(rows)
