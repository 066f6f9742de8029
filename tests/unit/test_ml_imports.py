"""loop/ml keeps heavy libraries out of import time, and trl behind one module (loop/ml/trl_backend.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import loop

LOOP_DIR = Path(loop.__file__).parent
HEAVY = ("torch", "transformers", "trl", "peft", "datasets")
# sampling.py is the one exception by design: only the transformers backend imports it, while generating.
CHEAP_MODULES = [
    f"loop.ml.{p.stem}"
    for p in sorted((LOOP_DIR / "ml").glob("*.py"))
    if p.stem not in ("__init__", "sampling")
]


def _imported_top_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_trl_is_imported_by_one_module_only():
    importers = sorted(
        str(p.relative_to(LOOP_DIR)) for p in LOOP_DIR.rglob("*.py") if "trl" in _imported_top_names(p)
    )
    assert importers == ["ml/trl_backend.py"]


def test_importing_the_ml_modules_loads_no_heavy_library():
    assert "loop.ml.dpo" in CHEAP_MODULES and "loop.ml.trl_backend" in CHEAP_MODULES
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CHEAP_MODULES)
        + f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
