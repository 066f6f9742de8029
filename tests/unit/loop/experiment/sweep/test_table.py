"""The sweep's per-prompt table: written beside every report, read back exactly, and enough (with its JSON
twin's facts) to regenerate the committed document byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loop.cli.app import main
from loop.experiment.sweep.table import SweepTableError, read_table, write_table
from tests.support.sweep_evidence import DOCUMENT, TABLE, synthetic_results


def _by_arm(results):
    return {r.cell.arm: r for r in results}


def test_the_table_round_trips_every_cell_exactly(tmp_path: Path) -> None:
    results, ref = synthetic_results()
    path = write_table(tmp_path / "t.csv", results, ref, dict.fromkeys(ref, 1))
    back, ref_back = read_table(path)
    assert _by_arm(back) == _by_arm(results) and ref_back == ref
    untrained = _by_arm(back)["pvar.learned.s3.b32"]
    assert untrained.means is None and untrained.decided_ab == 0  # one row, empty prompt
    assert (
        path.read_bytes()
        == write_table(tmp_path / "u.csv", back, ref_back, dict.fromkeys(ref, 1)).read_bytes()
    )


def test_the_committed_document_regenerates_from_the_committed_table_byte_for_byte(tmp_path: Path) -> None:
    """The committed evidence is the synthetic sweep (no real sweep database is in the repository)."""
    assert _by_arm(read_table(TABLE)[0]) == _by_arm(synthetic_results()[0])
    out = tmp_path / DOCUMENT.name
    args = ["sweep", "report", "--from-table", str(TABLE), "--out", str(out), "--bootstrap", "500"]
    assert main(args) == 0
    assert out.read_bytes() == DOCUMENT.read_bytes()
    assert (tmp_path / "img" / "experiment-results-curve.png").stat().st_size > 0
    # The mechanism rows travel with the table, and the document's mechanism section is theirs.
    assert (tmp_path / "experiment-results-mechanism.csv").read_bytes() == (
        TABLE.with_name("experiment-results-mechanism.csv").read_bytes()
    )
    assert "## The mechanism: DPO gradient norm at the initial policy" in out.read_text()


def test_a_bad_table_is_refused_naming_file_and_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "experiment-results.csv"
    shutil.copy(TABLE.with_suffix(".json"), bad.with_suffix(".json"))
    lines = TABLE.read_text().splitlines()
    lines[3] = lines[3].replace("learned,pvar", "learned,random", 1)  # the cell name no longer matches
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(SweepTableError, match=r"experiment-results.csv:4: column cell"):
        read_table(bad)
    out = tmp_path / "r.md"
    assert main(["sweep", "report", "--from-table", str(bad), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not out.exists()
    bad.write_text("cell,rm\n")
    with pytest.raises(SweepTableError, match=r":1: expected the columns"):
        read_table(bad)
    bad.with_suffix(".json").unlink()
    with pytest.raises(SweepTableError, match="facts file is missing"):
        from loop.experiment.sweep.run import report_from_table

        report_from_table(bad, out)


def test_the_committed_results_regenerate_from_their_committed_table_byte_for_byte(tmp_path: Path) -> None:
    """docs/experiment-results.md is the pre-registered run's report: anyone can redo it from the per-prompt
    table and the mechanism rows committed beside it, and it answers the pre-registered question."""
    docs = Path(__file__).resolve().parents[5] / "docs"
    document, table = docs / "experiment-results.md", docs / "experiment-results.csv"
    out = tmp_path / document.name
    assert main(["sweep", "report", "--from-table", str(table), "--out", str(out)]) == 0
    assert out.read_bytes() == document.read_bytes()
    text = document.read_text()
    assert "Profile `preregistered`" in text and "non-inferiority margin 0.01" in text
    assert "## The mechanism: DPO gradient norm at the initial policy" in text
