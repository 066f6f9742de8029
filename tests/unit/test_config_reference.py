"""docs/configuration.md is generated from loop/config.py: the committed file is what render_reference() gives,
and it shows every section and key with its type, default and help text."""

from __future__ import annotations

from pathlib import Path

from loop.config import Config
from loop.config_reference import COMMAND, render_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_committed_reference_is_the_generated_one():
    committed = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert committed == render_reference(), (
        f"docs/configuration.md differs from the help texts in loop/config.py; regenerate it: {COMMAND}"
    )


def _sections(text: str) -> dict[str, list[str]]:
    """Section name -> its table rows' keys, in order."""
    out: dict[str, list[str]] = {}
    for chunk in text.split("\n## ")[1:]:
        name = chunk.split("\n", 1)[0].strip("`[]")
        out[name] = [line.split("`")[1] for line in chunk.splitlines() if line.startswith("| `")]
    return out


def test_reference_shows_every_section_and_key_with_type_default_and_help():
    text = render_reference()
    assert _sections(text) == {
        name: list(field.annotation.model_fields) for name, field in Config.model_fields.items()
    }
    rows = text.splitlines()
    assert "| `k` | integer (>= 2) | `5` | Responses sampled per prompt (the paper's K). |" in rows
    assert any(r.startswith("| `url` | string | unset | SQLAlchemy URL") for r in rows)  # None: unset
    assert any(r.startswith('| `candidates` | integer or `"auto"` | `"auto"` |') for r in rows)
    assert "- `PVAR_LOOP_ARGILLA_API_KEY`: `[argilla] api_key`" in rows


def test_cells_stay_one_table_cell():
    """A `|` in a help text would split the row; a bare `<data_dir>` would read as an HTML tag."""
    text = render_reference()
    assert r"\<data_dir>/pvar-loop.db" in text
    assert "`accelerate launch --config_file <accelerate_config>`" in text  # code spans stay as written
    for line in text.splitlines():
        if line.startswith("| `"):
            assert line.replace("\\|", "").count("|") == 5, line
