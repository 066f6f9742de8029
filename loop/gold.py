"""Gold (honeypot) items from an operator's file: JSONL or CSV rows of prompt, response_a, response_b, expected
(a|b|tie) and an optional rationale (and `id`, the operator's own). Validated like `ingest`: one bad row and
nothing is stored; the error names the file and the row.

A gold prompt may also be in the prompt pool (the operator may have taken it from there): allowed, and said.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from loop.ingest import IngestError, Reject, _read_csv, _unstorable, _visible, detect_format, read_jsonl
from loop.ingest import prompt_id as pool_prompt_id
from storage.errors import PvarLoopError
from storage.repositories.gold import add_gold_items, stored_expected
from storage.repositories.prompts import existing_prompt_ids

EXPECTED = ("a", "b", "tie")
TEXTS = ("prompt", "response_a", "response_b")


class GoldFileError(PvarLoopError, ValueError):
    """The gold file could not be added; nothing was stored."""


@dataclass
class GoldReport:
    path: Path
    read: int = 0
    added: int = 0
    already_stored: int = 0
    duplicates_in_file: int = 0
    in_pool: list[str] = field(default_factory=list)  # where: rows whose prompt is also a pool prompt

    def summary(self) -> str:
        return (
            f"{self.path}: read {self.read} rows, added {self.added} gold items, {self.already_stored} "
            f"already stored, {self.duplicates_in_file} duplicates within the file"
        )

    def pool_note(self) -> str | None:
        """One line naming the rows whose prompt is also in the pool (allowed), or None."""
        if not self.in_pool:
            return None
        shown = ", ".join(self.in_pool[:10]) + (
            f" and {len(self.in_pool) - 10} more" if len(self.in_pool) > 10 else ""
        )
        return (
            f"{self.path.name}: {len(self.in_pool)} gold prompts are also pool prompts ({shown}); allowed: "
            "a round may select the same prompt with its own pair"
        )


def gold_key(prompt: str, response_a: str, response_b: str) -> str:
    """The gold item's content hash: the same pair added twice is one gold item."""
    text = json.dumps([prompt.strip(), response_a, response_b], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _to_gold(record: dict, where: str, source: str) -> dict | Reject:
    for name in TEXTS:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return Reject(where, f"missing {name!r}")
        if not isinstance(value, str):
            return Reject(where, f"{name!r} must be a string, got {type(value).__name__}")
        if why := _unstorable(value):
            return Reject(where, f"{name!r} {why}")
        if not _visible(value):
            return Reject(where, f"{name!r} has no visible characters")
    expected = record.get("expected")
    if not isinstance(expected, str) or expected.strip().lower() not in EXPECTED:
        return Reject(where, f"unknown expected answer {expected!r} (one of: a, b, tie)")
    rationale = record.get("rationale")
    if rationale is not None and not isinstance(rationale, str):
        return Reject(where, f"'rationale' must be a string, got {type(rationale).__name__}")
    if rationale is not None and (why := _unstorable(rationale)):
        return Reject(where, f"'rationale' {why}")
    source_id = record.get("id")
    if source_id is not None and not isinstance(source_id, str | int):
        return Reject(where, f"'id' must be a string or integer, got {type(source_id).__name__}")
    prompt = record["prompt"].strip()
    return {
        "key": gold_key(prompt, record["response_a"], record["response_b"]),
        "prompt": prompt,
        "response_a": record["response_a"],
        "response_b": record["response_b"],
        "expected": expected.strip().lower(),
        "rationale": (rationale or "").strip() or None,
        "source": source,
        "source_id": None if source_id in (None, "") else str(source_id),
    }


def _conflict(where: str, row: dict, other: str, first: dict) -> Reject:
    return Reject(
        where,
        f"the same pair as {other} with another expected answer ({row['expected']!r}, there "
        f"{first['expected']!r})",
    )


def _rows(path: Path) -> Any:
    fmt = detect_format(path)
    if fmt not in ("jsonl", "csv"):
        raise GoldFileError(f"{path}: gold items are read from .jsonl or .csv files, not {fmt}")
    return read_jsonl(path) if fmt == "jsonl" else _read_csv(path)


def add_gold_file(session: Session, path: Path) -> GoldReport:
    """Validate every row of `path`, then store its gold items. Raises GoldFileError naming the first bad row
    (the caller rolls back: nothing is stored)."""
    if not path.is_file():
        raise GoldFileError(f"{path}: no such file")
    report = GoldReport(path)
    rows: list[dict] = []
    where_of: dict[str, str] = {}
    index_of: dict[str, int] = {}
    bad: list[Reject] = []
    try:
        for where, item in _rows(path):
            report.read += 1
            row = item if isinstance(item, Reject) else _to_gold(item, where, path.name)
            if isinstance(row, Reject):
                bad.append(row)
                continue
            if row["key"] in where_of:
                first = rows[index_of[row["key"]]]
                if first["expected"] != row["expected"]:
                    bad.append(_conflict(where, row, f"{where_of[row['key']]} of the file", first))
                report.duplicates_in_file += 1
                continue
            where_of[row["key"]] = where
            index_of[row["key"]] = len(rows)
            rows.append(row)
    except IngestError as e:  # a CSV without its header, undecodable bytes: already names file and line
        raise GoldFileError(f"{e}; nothing was stored") from None
    except OSError as e:
        raise GoldFileError(f"{path}: cannot read: {e}") from e
    if bad:
        more = f" ({len(bad) - 1} more invalid rows)" if len(bad) > 1 else ""
        raise GoldFileError(f"{path}: {bad[0].where}: {bad[0].reason}; nothing was stored{more}")
    if not rows:
        raise GoldFileError(f"{path}: no gold items in the file; nothing was stored")
    stored = stored_expected(session, [r["key"] for r in rows])
    clash = [r for r in rows if r["key"] in stored and stored[r["key"]][1] != r["expected"]]
    if clash:
        more = f" ({len(clash) - 1} more such rows)" if len(clash) > 1 else ""
        gold_id, expected = stored[clash[0]["key"]]
        raise GoldFileError(
            f"{path}: {where_of[clash[0]['key']]}: this pair is stored already (gold item {gold_id}) with "
            f"expected answer {expected!r}, not {clash[0]['expected']!r}; nothing was stored{more}"
        )
    pool = existing_prompt_ids(session, [pool_prompt_id(r["prompt"]) for r in rows])
    report.in_pool = [where_of[r["key"]] for r in rows if pool_prompt_id(r["prompt"]) in pool]
    report.added = add_gold_items(session, rows)
    report.already_stored = len(rows) - report.added
    return report
