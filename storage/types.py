"""Column types shared by the models: they keep the database types as they were, and make the Python side
uniform on every backend."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class StrEnumType(TypeDecorator[StrEnum]):
    """A VARCHAR holding a StrEnum's value; reads come back as enum members, writes must be valid values.

    The database column stays a plain VARCHAR(length) (no native ENUM), so adding a status needs no
    migration and rows written before the enum existed read back unchanged.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum
        self.length = length

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


class UTCDateTime(TypeDecorator[datetime]):
    """TIMESTAMP WITH TIME ZONE that reads back timezone-aware (UTC) on every backend.

    PostgreSQL keeps the zone; SQLite stores the UTC wall time and hands it back naive. Values are converted to
    UTC on the way in (a naive one is taken as UTC), and naive ones are marked UTC on the way out, so callers
    can compare and subtract datetimes without caring which database they came from.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """`value` in UTC; a naive value is taken to be UTC already (what SQLite and Argilla hand out)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
