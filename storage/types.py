"""Column types shared by the models: they keep the database types as they were, and make the Python side
uniform on every backend."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, String, Text
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


def storable_text(value: str) -> str:
    """A model's output as it can be stored on every backend: the one cleaning rule for generated text.

    PostgreSQL text refuses NUL and UTF-8 cannot encode a lone surrogate (a tokenizer can decode either), while
    SQLite keeps both, so each becomes U+FFFD. Callers that score or judge a text clean it first, so the stored
    row is the text that was scored."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


class ModelText(TypeDecorator[str]):
    """TEXT holding a model's output: every write goes through storable_text, whoever writes it."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable_text(value)
