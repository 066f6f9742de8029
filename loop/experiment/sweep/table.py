"""The sweep's evidence as one small CSV: a row per (cell, eval prompt) with the cell's mean judge score on that
prompt and the samples behind it, the cell's label counts repeated on each of its rows (a cell with no
evaluation has one row with an empty prompt), and the initial policy's per-prompt means under cell `initial`.
`pvar-loop sweep report` writes it next to the document and can regenerate the document from it alone (with the
run's facts from the document's JSON twin), so anyone can redo every interval without the database.
Floats are written with repr(), which round-trips exactly: the document from the table is the document from
the database, byte for byte."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from loop.experiment.sweep.cells import Cell
from loop.experiment.sweep.data import CellResult
from storage.errors import PvarLoopError

INITIAL = "initial"
COLUMNS = (
    "cell",
    "rm",
    "strategy",
    "seed",
    "budget",
    "status",
    "trained",
    "labels",
    "decided",
    "ties",
    "win_rate",
    "wall_s",
    "prompt",
    "mean_score",
    "n_samples",
)


class SweepTableError(PvarLoopError, ValueError):
    """A per-prompt table that cannot be read back (the message names the file, line and column)."""


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def write_table(
    path: Path,
    results: Sequence[CellResult],
    ref: dict[str, float] | None,
    ref_samples: dict[str, int] | None = None,
) -> Path:
    """Write the table atomically; rows sorted, so the same evidence gives the same file."""
    rows: list[list[str]] = []
    for r in sorted(results, key=lambda r: r.cell.arm):
        c = r.cell
        head = [c.arm, c.rm, c.kind, str(c.seed), str(c.budget), r.status]
        head += [str(int(r.trained)), str(r.labels), str(r.decided_ab), str(r.ties)]
        head += [_num(r.win_rate), _num(r.wall_s)]
        if not r.means:
            rows.append([*head, "", "", ""])
            continue
        counts = r.n_samples or {}
        for p in sorted(r.means):
            rows.append([*head, p, _num(r.means[p]), str(counts.get(p, ""))])
    for p in sorted(ref or {}):
        n = str((ref_samples or {}).get(p, ""))
        rows.append([INITIAL, "", INITIAL, "", "0", "", "0", "0", "0", "0", "", "", p, _num(ref[p]), n])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(rows)
    tmp.replace(path)
    return path


def _opt(text: str) -> float | None:
    return None if text == "" else float(text)


def read_table(path: Path) -> tuple[list[CellResult], dict[str, float] | None]:
    """The cells and the initial policy's means back from a table written by write_table."""
    if not path.is_file():
        raise SweepTableError(f"{path}: no such table")
    cells: dict[str, dict] = {}
    ref: dict[str, float] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise SweepTableError(f"{path}:1: expected the columns {','.join(COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            try:
                _read_row(row, cells, ref)
            except (KeyError, ValueError) as e:
                raise SweepTableError(f"{path}:{line}: {e}") from e
    results = [
        CellResult(
            cell=c["cell"],
            status=c["status"],
            labels=c["labels"],
            decided_ab=c["decided"],
            ties=c["ties"],
            trained=c["trained"],
            means=c["means"] or None,
            win_rate=c["win_rate"],
            wall_s=c["wall_s"],
            n_samples=c["n"] or None,
        )
        for c in cells.values()
    ]
    return results, (ref or None)


def _read_row(row: dict, cells: dict[str, dict], ref: dict[str, float]) -> None:
    arm = row["cell"]
    if arm == INITIAL:
        ref[row["prompt"]] = float(row["mean_score"])
        return
    cell = Cell.parse(arm)  # its rounds are in its name only (budget is per round)
    if cell is None or (cell.rm, cell.kind, cell.seed, cell.budget) != (
        row["rm"],
        row["strategy"],
        int(row["seed"]),
        int(row["budget"]),
    ):
        raise ValueError(f"column cell: {arm!r} does not match rm/strategy/seed/budget of its row")
    c = cells.setdefault(
        arm,
        {
            "cell": cell,
            "status": row["status"],
            "trained": row["trained"] == "1",
            "labels": int(row["labels"]),
            "decided": int(row["decided"]),
            "ties": int(row["ties"]),
            "win_rate": _opt(row["win_rate"]),
            "wall_s": _opt(row["wall_s"]),
            "means": {},
            "n": {},
        },
    )
    if row["prompt"]:
        c["means"][row["prompt"]] = float(row["mean_score"])
        if row["n_samples"]:
            c["n"][row["prompt"]] = int(row["n_samples"])
