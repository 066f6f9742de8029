"""Column types shared by the models: they keep the database types as they were, and make the Python side
uniform on every backend."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import String
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
