"""Prompt ingest: JSONL, CSV, Parquet or a saved Hugging Face `datasets` directory into the prompts table.

Rows stream through validation into one transaction. Any invalid row rolls the whole file back (default), or,
with skip_invalid, is left out and written to a reject report once the valid rows are committed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from storage.errors import PvarLoopError
from storage.repositories.prompts import add_prompts, existing_prompt_ids

SPLITS = ("train", "eval")
FORMATS = ("jsonl", "csv", "parquet", "datasets")
BATCH = 5000
MAX_REPORTED = 20
_WS = re.compile(r"\s+")
# Characters that draw nothing: controls, format characters (zero-width space/joiners, BOM, word joiner, bidi
# marks, tags), separators, and the "filler" letters and blanks some fonts render as empty space.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u180e\u2800\u3164\uffa0")


class IngestError(PvarLoopError, ValueError):
    """The file could not be ingested; nothing was written. The message lists the bad rows."""


@dataclass
class Reject:
    where: str  # "line 7" / "row 7"
    reason: str
    # What the row held, so it can be fixed and re-ingested: the parsed record, or the raw line when it did not
    # parse; and its own `id`, when it has one.
    content: Any = None
    id: Any = None


@dataclass
class IngestReport:
    path: Path
    read: int = 0
    inserted: int = 0
    duplicates_in_file: int = 0
    already_present: int = 0
    rejects: list[Reject] = field(default_factory=list)
    reject_report: Path | None = None
    warnings: list[str] = field(default_factory=list)  # "line 9: ...", the first MAX_REPORTED
    warning_count: int = 0

    def summary(self) -> str:
        text = (
            f"{self.path}: read {self.read} rows, added {self.inserted}, skipped {self.duplicates_in_file} "
            f"duplicates within the file and {self.already_present} already in the pool"
        )
        if self.rejects:
            text += f", rejected {len(self.rejects)} invalid rows"
        if self.warning_count:
            text += f"; {self.warning_count} ids reused for different prompts (both kept)"
        if self.reject_report:
            text += f" (see {self.reject_report})"
        return text


def normalise(text: str) -> str:
    """What two prompts must share to count as the same prompt: NFC, trimmed, whitespace runs collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def prompt_id(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "datasets"
        raise IngestError(f"{path}: a directory, but not a saved `datasets` dataset (no dataset_info.json)")
    suffix = path.suffix.lower()
    fmt = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
    if suffix not in fmt:
        raise IngestError(
            f"{path}: unknown file type {suffix!r}; use .jsonl, .csv, .parquet or a datasets dir"
        )
    return fmt[suffix]


# Each reader yields (where, record-or-Reject). Readers decode per line so one bad byte names its line.
def read_jsonl(path: Path) -> Iterator[tuple[str, dict | Reject]]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            where = f"line {n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raw_text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                yield where, Reject(where, f"invalid UTF-8 at byte {e.start}", content=raw_text)
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield (
                    where,
                    Reject(where, f"malformed JSON: {e.msg} (column {e.colno})", content=line.rstrip("\r\n")),
                )
                continue
            if not isinstance(obj, dict):
                yield where, Reject(where, f"expected a JSON object, got {type(obj).__name__}", content=obj)
                continue
            yield where, obj


def _read_csv(path: Path) -> Iterator[tuple[str, dict | Reject]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise IngestError(
            f"{path}: line {line}: invalid UTF-8 at byte {e.start}; nothing was written"
        ) from None
    # strict: a quote that is never closed, or closed in the middle of a field, is an error instead of a field
    # that silently swallows the following lines.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise IngestError(f"{path}: line 1: malformed CSV header: {e}") from None
    if not header or "prompt" not in header:
        raise IngestError(f"{path}: line 1: no 'prompt' column (columns: {header})")
    last = reader.line_num
    while True:
        start = last + 1  # a quoted field may span lines: a row is named by the line it starts on
        where = f"line {start}"
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            last = reader.line_num
            yield where, _csv_reject(where, str(e), start, last)
            continue
        last = reader.line_num
        if not values:
            continue  # a blank line
        if len(values) > len(header):
            yield where, Reject(where, "more values than header columns", content=values)
            continue
        row = dict(zip(header, values + [None] * (len(header) - len(values)), strict=True))
        record: dict[str, Any] = {k: v for k, v in row.items() if k != "metadata"}
        if row.get("metadata"):
            try:
                record["metadata"] = json.loads(row["metadata"])
            except json.JSONDecodeError as e:
                yield (
                    where,
                    Reject(where, f"metadata column is not JSON: {e.msg}", content=row, id=row.get("id")),
                )
                continue
        yield where, record


def _csv_reject(where: str, error: str, start: int, end: int) -> Reject:
    lines = f"line {start}" if start == end else f"lines {start}-{end}"
    if error == "unexpected end of data":
        return Reject(
            where, f"unterminated quoted field: its quote is never closed ({lines}, to the end of the file)"
        )
    return Reject(
        where, f"malformed CSV: {error} on line {end}, a quote closed mid-field ({lines} not loaded)"
    )


def _read_table_rows(rows: Iterator[dict]) -> Iterator[tuple[str, dict | Reject]]:
    for n, row in enumerate(rows, start=1):
        yield f"row {n}", row


def _read_parquet(path: Path) -> Iterator[tuple[str, dict | Reject]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise IngestError(f"{path}: not a readable Parquet file: {e}") from e
    if "prompt" not in pf.schema_arrow.names:
        raise IngestError(f"{path}: no 'prompt' column (columns: {pf.schema_arrow.names})")

    def rows() -> Iterator[dict]:
        for batch in pf.iter_batches(batch_size=BATCH):
            yield from batch.to_pylist()

    yield from _read_table_rows(rows())


def _read_datasets(path: Path, split: str) -> Iterator[tuple[str, dict | Reject]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise IngestError(f"{path}: not a loadable `datasets` directory: {e}") from e
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise IngestError(f"{path}: has splits {sorted(ds)}, not {split!r}; pass --split")
        ds = ds[split]
    if "prompt" not in ds.column_names:
        raise IngestError(f"{path}: no 'prompt' column (columns: {ds.column_names})")
    yield from _read_table_rows(iter(ds))


def _unstorable(value: Any) -> str | None:
    """Why `value` (a string, or the strings in a JSON-like structure) cannot be stored as text, else None.

    NUL is refused by PostgreSQL text and JSON (and SQLite would keep a prompt no tokenizer expects); a lone
    surrogate (JSON "\\ud800") is not Unicode and cannot be encoded as UTF-8 at all."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            return (
                f"contains a lone surrogate (\\u{ord(value[e.start]):04x}), which is not valid Unicode text"
            )
        return None
    if isinstance(value, dict):
        return next((why for item in value.items() if (why := _unstorable(item))), None)
    if isinstance(value, list | tuple):
        return next((why for item in value if (why := _unstorable(item))), None)
    return None


def _visible(text: str) -> bool:
    """Whether the text draws anything: a prompt of zero-width or blank characters is an invisible task."""
    return any(
        not ch.isspace()
        and ch not in _BLANK_LETTERS
        and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
        and not ("\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef")  # variation selectors
        for ch in text
    )


def _to_row(record: dict, where: str, *, split: str, source: str, max_chars: int) -> dict | Reject:
    text = record.get("prompt")
    if text is None:
        return Reject(where, "missing 'prompt'")
    if not isinstance(text, str):
        return Reject(where, f"'prompt' must be a string, got {type(text).__name__}")
    extra = {k: v for k, v in record.items() if k not in ("prompt", "id", "metadata")}
    for name, value in (("prompt", text), ("id", record.get("id")), ("metadata", record.get("metadata"))):
        if why := _unstorable(value):
            return Reject(where, f"'{name}' {why}")
    for name, value in extra.items():
        if why := _unstorable(name) or _unstorable(value):
            return Reject(where, f"column {name!r} {why}")
    if not text.strip():
        return Reject(where, "empty 'prompt'")
    if not _visible(text):
        return Reject(
            where, "'prompt' has no visible characters (only zero-width, blank or control characters)"
        )
    if len(text) > max_chars:
        return Reject(
            where,
            f"prompt has {len(text)} characters, over the limit of {max_chars} ([pool] max_prompt_chars)",
        )
    source_id = record.get("id")
    if source_id is not None and not isinstance(source_id, str | int):
        return Reject(where, f"'id' must be a string or integer, got {type(source_id).__name__}")
    meta = record.get("metadata", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        return Reject(where, f"'metadata' must be an object, got {type(meta).__name__}")
    return {
        "id": prompt_id(text),
        "text": text.strip(),
        "source": source,
        "source_id": None if source_id is None else str(source_id),
        "split": split,
        "meta": {**extra, **meta},
    }


def _reader(path: Path, fmt: str, split: str) -> Iterator[tuple[str, dict | Reject]]:
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "parquet":
        return _read_parquet(path)
    return _read_datasets(path, split)


def ingest_file(
    session: Session,
    path: Path,
    *,
    split: str = "train",
    max_chars: int = 8000,
    skip_invalid: bool = False,
) -> IngestReport:
    """Stream `path` into the session. Raises IngestError (caller rolls back) unless skip_invalid."""
    if split not in SPLITS:
        raise IngestError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not path.exists():
        raise IngestError(f"{path}: no such file or directory")
    fmt = detect_format(path)
    report = IngestReport(path=path)
    seen: set[str] = set()
    first_prompt: dict[str, str] = {}  # source id -> prompt id of its first row
    batch: list[dict] = []
    try:
        for where, item in _reader(path, fmt, split):
            report.read += 1
            row = (
                item
                if isinstance(item, Reject)
                else _to_row(item, where, split=split, source=path.name, max_chars=max_chars)
            )
            if isinstance(row, Reject):
                if isinstance(item, dict):  # a parsed row: keep it whole in the reject report
                    row.content, row.id = item, item.get("id")
                report.rejects.append(row)
                continue
            if row["source_id"] is not None:
                _check_source_id(row, where, first_prompt, report)
            if row["id"] in seen:
                report.duplicates_in_file += 1
                continue
            seen.add(row["id"])
            batch.append(row)
            if len(batch) >= BATCH and (skip_invalid or not report.rejects):
                _flush(session, batch, report)
    except OSError as e:
        raise IngestError(f"{path}: cannot read: {e}") from e
    if report.rejects and not skip_invalid:
        if len(report.rejects) == 1:
            [r] = report.rejects
            raise IngestError(
                f"{path}: {r.where}: {r.reason}; nothing was written (use --skip-invalid to load the rest)"
            )
        shown = "\n  ".join(f"{path}: {r.where}: {r.reason}" for r in report.rejects[:MAX_REPORTED])
        more = len(report.rejects) - MAX_REPORTED
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise IngestError(
            f"{len(report.rejects)} invalid rows; nothing was written (use --skip-invalid to load the rest):"
            f"\n  {shown}{tail}"
        )
    _flush(session, batch, report)
    return report


def _check_source_id(row: dict, where: str, first_prompt: dict[str, str], report: IngestReport) -> None:
    """Warn when a source id comes back with a different prompt: both are kept (ids are not identity here)."""
    if first_prompt.setdefault(row["source_id"], row["id"]) != row["id"]:
        report.warning_count += 1
        if len(report.warnings) < MAX_REPORTED:
            report.warnings.append(
                f"{where}: id {row['source_id']!r} was already used by an earlier row for a different prompt"
            )


def _flush(session: Session, batch: list[dict], report: IngestReport) -> None:
    if not batch:
        return
    ids = [r["id"] for r in batch]
    present = existing_prompt_ids(session, ids)
    new = [r for r in batch if r["id"] not in present]
    report.already_present += len(present)
    add_prompts(session, [{**r, "created_at": datetime.now(UTC)} for r in new])
    report.inserted += len(new)
    batch.clear()


def write_reject_report(report: IngestReport, directory: Path) -> Path | None:
    """Publish the rejects of a committed ingest (temp file + rename, so a reader never sees half a file)."""
    if not report.rejects:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = directory / f"{report.path.name}.{stamp}.rejects.jsonl"
    tmp = target.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in report.rejects:
            entry = {
                "file": str(report.path),
                "where": r.where,
                "reason": r.reason,
                "id": r.id,
                "row": r.content,
            }
            # default=str: a Parquet/datasets row may hold bytes or dates; the report must still be written
            fh.write(json.dumps(entry, default=str) + "\n")
    tmp.replace(target)
    report.reject_report = target
    return target
