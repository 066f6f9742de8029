"""The layering the tree is built on (pyproject.toml [tool.importlinter]): storage <- annotation <- loop,
a pure acquisition package, ml without the database or the CLI, and no import cycles between siblings."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


@pytest.fixture
def logging_kept():
    """lint_imports configures logging with dictConfig, which disables every logger that exists already: put
    them back, or later tests in this process see none of our log records."""
    loggers = [x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    disabled = {x: x.disabled for x in loggers}
    yield
    for x, was in disabled.items():
        x.disabled = was


@pytest.mark.parametrize("contract", [c["id"] for c in CONTRACTS])
def test_import_contract_is_kept(contract, monkeypatch, capsys, logging_kept):
    monkeypatch.chdir(ROOT)
    exit_code = lint_imports(
        config_filenames=(str(ROOT / "pyproject.toml"),), limit_to_contracts=(contract,), no_cache=True
    )
    assert exit_code == 0, capsys.readouterr().out


def test_every_package_is_covered():
    """A new top-level package of ours must be placed in the layers, or nothing checks its imports."""
    ours = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    layers = next(c for c in CONTRACTS if c["type"] == "layers")["layers"]
    assert ours == set(layers)
