"""SQL lives in storage/: no module under loop/ builds or runs a SQLAlchemy query itself, and no module under
loop/ or annotation/ writes rows itself (session.add/merge/delete, the generic storage.upsert); each calls a
storage repository function (which takes a Session and never commits). storage/ imports nothing of ours above
it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Query construction: what a module needs to write SQL (acquisition.strategies.select is numpy, not this).
QUERY_NAMES = {
    "select", "insert", "update", "delete", "func", "and_", "or_", "not_", "union", "exists", "text",
    "distinct", "case", "literal", "tuple_", "aliased", "Select",
}  # fmt: skip
# Session methods that run a statement (session.get(Model, id) is plain unit-of-work use).
EXECUTING = {"execute", "scalar", "scalars"}
# Session methods that write rows: a named repository function does it (storage.repositories.*.add_... etc.).
WRITING = {
    "add", "add_all", "merge", "delete", "bulk_save_objects", "bulk_insert_mappings", "bulk_update_mappings",
}  # fmt: skip
# Modules under loop/ allowed to query anyway, with the reason. Keep it empty unless there is a reason.
EXCEPTIONS: dict[str, str] = {}


def sql_in(source: str) -> list[str]:
    """What in `source` constructs or executes SQL: 'line: what' for each occurrence."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            found += [
                f"{node.lineno}: imports {a.name} from {node.module}"
                for a in node.names
                if a.name in QUERY_NAMES
            ]
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name == "sqlalchemy"]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTING
        ):
            found.append(f"{node.lineno}: calls .{node.func.attr}()")
    return found


def _is_session(node: ast.expr) -> bool:
    """`session`, `db_session`, `uow.session`, `self.session`: what a unit of work's session is called here."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name == "session" or name.endswith("_session")


def writes_in(source: str) -> list[str]:
    """Where `source` writes rows itself, not through a repository: 'line: what' for each occurrence."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "storage.upsert":
            found.append(f"{node.lineno}: imports the generic upsert from storage.upsert")
        elif isinstance(node, ast.ImportFrom) and node.module == "storage":
            found += [f"{node.lineno}: imports storage.upsert" for a in node.names if a.name == "upsert"]
        elif isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: imports storage.upsert" for a in node.names if a.name == "storage.upsert"
            ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in WRITING
            and _is_session(node.func.value)
        ):
            found.append(f"{node.lineno}: calls session.{node.func.attr}()")
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_checker_sees_queries():
    assert sql_in("from sqlalchemy import func, select\n") == [
        "1: imports func from sqlalchemy",
        "1: imports select from sqlalchemy",
    ]
    assert sql_in("from sqlalchemy.orm import aliased\n") == ["1: imports aliased from sqlalchemy.orm"]
    assert sql_in("import sqlalchemy\n") == ["1: import sqlalchemy"]
    assert sql_in("rows = session.execute(stmt).all()\n") == ["1: calls .execute()"]
    assert sql_in("n = s.scalar(q)\n") == ["1: calls .scalar()"]
    assert sql_in("from sqlalchemy.orm import Session\nrow = session.get(Round, 1)\n") == []
    assert sql_in("from loop.acquisition.strategies import select\nselect('pvar', c, 2, rng)\n") == []


@pytest.mark.parametrize("path", _modules("loop"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_outside_storage(path: Path):
    rel = str(path.relative_to(ROOT))
    if rel in EXCEPTIONS:
        pytest.skip(EXCEPTIONS[rel])
    found = sql_in(path.read_text(encoding="utf-8"))
    assert not found, f"{rel} builds SQL itself; move the query into a storage/ repository: {found}"


def test_the_checker_sees_writes():
    assert writes_in("session.add(Round(number=1))\n") == ["1: calls session.add()"]
    assert writes_in("uow.session.merge(row)\nself.session.add_all(rows)\n") == [
        "1: calls session.merge()",
        "2: calls session.add_all()",
    ]
    assert writes_in("db_session.delete(row)\n") == ["1: calls session.delete()"]
    assert writes_in("from storage.upsert import upsert\n") == [
        "1: imports the generic upsert from storage.upsert"
    ]
    assert writes_in("from storage import upsert\n") == ["1: imports storage.upsert"]
    assert writes_in("import storage.upsert\n") == ["1: imports storage.upsert"]
    # sets, repositories and Argilla's bulk upsert are not row writes of ours
    assert writes_in("seen.add(x)\nadd_round(session, number=1)\nupsert_records(dataset, records)\n") == []


@pytest.mark.parametrize(
    "path", _modules("loop") + _modules("annotation"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_row_writes_outside_storage(path: Path):
    rel = str(path.relative_to(ROOT))
    found = writes_in(path.read_text(encoding="utf-8"))
    assert not found, f"{rel} writes rows itself; add a named storage/ repository function for it: {found}"


def test_exceptions_are_real_modules():
    assert all((ROOT / rel).is_file() for rel in EXCEPTIONS)


@pytest.mark.parametrize("path", _modules("storage"), ids=lambda p: str(p.relative_to(ROOT)))
def test_storage_imports_nothing_of_ours_above_it(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        bad = [n for n in names if n.split(".")[0] in ("loop", "annotation")]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
