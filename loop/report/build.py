"""`pvar-loop report`: an HTML page with PNG plots and report.json, built from the database.

Files are staged in a temporary directory inside `out_dir` and moved into place one by one (os.replace is
atomic per file), index.html last: a reader never sees a page that references a half-written image.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from loop.config import QualityConfig

INDEX, DATA = "index.html", "report.json"


@dataclass(frozen=True)
class ReportFiles:
    index: Path
    data: Path
    plots: dict[str, Path] = field(default_factory=dict)  # name -> PNG; only plots that had data
    rounds: int = 0
    verdict: str = ""  # the headline sentence


def build_report(session: Session, out_dir: Path, quality: QualityConfig | None = None) -> ReportFiles:
    """Read the database and write index.html, report.json and the plots into `out_dir` (annotators flagged
    against `quality`, [quality]'s defaults when None)."""
    from loop.report.data import collect
    from loop.report.html import render
    from loop.report.plots import PLOTS

    data = collect(session, quality)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))
    try:
        drawn: dict[str, str] = {}
        empty: dict[str, str] = {}
        for name, (filename, draw, why_empty) in PLOTS.items():
            if draw(data, stage / filename):
                drawn[name] = filename
            else:
                empty[name] = why_empty
        payload = {**data.as_json(), "plots": drawn, "missing_plots": empty}
        (stage / DATA).write_text(json.dumps(payload, indent=1, allow_nan=False), encoding="utf-8")
        (stage / INDEX).write_text(render(data, drawn, empty), encoding="utf-8")
        for filename in [*drawn.values(), DATA, INDEX]:
            os.replace(stage / filename, out_dir / filename)
        # A plot that has no data now must not linger from an earlier report.
        for filename, _, _ in PLOTS.values():
            if filename not in drawn.values():
                (out_dir / filename).unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ReportFiles(
        index=out_dir / INDEX,
        data=out_dir / DATA,
        plots={name: out_dir / filename for name, filename in drawn.items()},
        rounds=len(data.rounds),
        verdict=data.verdict.get("headline", ""),
    )
