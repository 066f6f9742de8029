"""A newcomer finds a module's tests by its name (docs/contributing.md, "Tests").

Every test file under tests/unit/ and tests/integration/ is one of

- tests/<kind>/test_<m>.py, where <m> is the name of exactly one module or package in loop/, annotation/ or
  storage/ (a name two of them share, like `audit` or `rounds`, must use the mirrored path);
- tests/<kind>/<package path>/test_<m>.py, mirroring the module <package path>/<m>(.py) exactly;
- either of those as test_<m>_<aspect>.py, a module's further test file, which must import that module;
- or listed in BEHAVIOUR below: a file about a behaviour no single module owns, with the modules it exercises.

Helpers shared between test modules live in tests/support/ (session fixtures in tests/fixtures/), never beside
the tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("loop", "annotation", "storage")
KINDS = ("unit", "integration")

# tests/<kind>/... path -> (the modules it exercises, why no single module names it). Keep it short.
BEHAVIOUR: dict[str, tuple[tuple[str, ...], str]] = {
    "unit/test_architecture.py": ((), "SQL lives in storage/: a rule over every module of loop/"),
    "unit/test_import_layers.py": ((), "the import-linter contracts in pyproject.toml, all packages"),
    "unit/test_ml_imports.py": (("loop.ml",), "import-time cost of every module of loop/ml"),
    "unit/test_doc_commands.py": ((), "every command block in README.md and docs/*.md is run or marked"),
    "unit/test_device_check.py": ((), "scripts/device-check, a script outside the packages"),
    "unit/test_test_layout.py": ((), "this rule: the names of the test files themselves"),
    "integration/test_deploy_compose.py": ((), "deploy/argilla-compose.yaml vs what argilla_server reads"),
    "integration/loop/experiment/test_sweep_sequential.py": (
        ("loop.experiment.sweep.cells", "loop.experiment.sweep.run", "loop.experiment.sweep.data"),
        "the sequential design end to end: multi-round cells, the matched arm, a profile over another's world",
    ),
    "integration/test_annotation_recreate.py": (
        ("annotation.gateway", "loop.cli.annotation"),
        "`push` re-creates records deleted in Argilla, driven through the CLI",
    ),
    "integration/test_cancelled_rounds.py": (
        ("loop.rounds.state", "loop.rounds.steps", "annotation.gateway"),
        "a cancelled round leaves the annotators' queue: cancel, withdraw, pull, train and export together",
    ),
    "integration/test_log_volume.py": (
        ("loop.rounds.scheduler", "loop.cli.app"),
        "the lines `pvar-loop run` and `score` log, summed over every module",
    ),
    "integration/test_manual_rounds.py": (
        ("loop.cli.rounds", "loop.rounds.state"),
        "runs docs/operators.md's by-hand section (RUN_BY in test_doc_commands.py)",
    ),
    "integration/test_reward_inputs.py": (
        ("loop.ml.reward_model", "loop.ml.rewards"),
        "reward training and reward scoring encode a pair alike: a property between two modules",
    ),
    "integration/test_reward_model_scoring.py": (
        ("loop.scoring.pool", "loop.ml.rewards"),
        "`pvar-loop score` with a reward model unlike the policy, through the CLI",
    ),
    "integration/test_round_crashes.py": (
        ("loop.rounds.state", "loop.rounds.scheduler"),
        "SIGKILL at every round state, then resume: the whole loop's crash safety",
    ),
    "integration/test_status_scheduler.py": (
        ("loop.cli.project", "loop.rounds.scheduler"),
        "`status` says whether a scheduler runs and why rounds are paused",
    ),
}


def source_modules(root: Path = ROOT) -> dict[str, bool]:
    """Dotted name -> is a package, for every module and package in loop/, annotation/ and storage/."""
    found: dict[str, bool] = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                found[".".join(parts[:-1])] = True
            else:
                found[".".join(parts)] = False
    return found


def imported_names(source: str) -> set[str]:
    """Every dotted name a module imports: `from a.b import c` gives a.b and a.b.c."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def problem(rel: str, modules: dict[str, bool], imports: set[str]) -> str | None:
    """Why tests/<rel> (e.g. "unit/loop/rounds/test_steps.py") breaks the naming rule; None if it keeps it."""
    path = Path(rel)
    stem = path.stem.removeprefix("test_")
    where = ".".join(path.parent.parts[1:])  # the mirrored package path, "" for a flat file
    words = stem.split("_")
    ambiguous = []
    for n in range(len(words), 0, -1):  # the whole name first, then shorter prefixes: test_<m>_<aspect>
        name = "_".join(words[:n])
        if where:
            matches = [f"{where}.{name}"] if f"{where}.{name}" in modules else []
        else:
            matches = sorted(m for m in modules if m.rsplit(".", 1)[-1] == name)
        if not matches:
            continue
        if len(matches) > 1:
            ambiguous.append(f"`{name}` names {', '.join(matches)}: use the mirrored path")
            continue
        module = matches[0]
        if n == len(words):
            return None
        if not modules[module] and module in imports:
            return None
        ambiguous.append(f"test_{name}_<aspect> must import {module}")
    hint = "; ".join(ambiguous) or "no module in loop/, annotation/ or storage/ has that name"
    return f"tests/{rel}: {hint} (or list it in BEHAVIOUR with a reason)"


def layout_files() -> list[str]:
    return sorted(
        p.relative_to(ROOT / "tests").as_posix()
        for kind in KINDS
        for p in (ROOT / "tests" / kind).rglob("test_*.py")
        if "__pycache__" not in p.parts
    )


def test_every_test_file_is_named_after_the_module_it_tests() -> None:
    modules = source_modules()
    problems = [
        found
        for rel in layout_files()
        if rel not in BEHAVIOUR
        and (found := problem(rel, modules, imported_names((ROOT / "tests" / rel).read_text())))
    ]
    assert not problems, "\n".join(problems)


def test_the_behaviour_list_is_current_and_needed() -> None:
    modules, files = source_modules(), set(layout_files())
    stale = [rel for rel in BEHAVIOUR if rel not in files]
    gone = [f"{rel}: {m}" for rel, (names, _) in BEHAVIOUR.items() for m in names if m not in modules]
    needless = [
        rel
        for rel in BEHAVIOUR
        if rel in files and problem(rel, modules, imported_names((ROOT / "tests" / rel).read_text())) is None
    ]
    assert not stale, f"BEHAVIOUR lists files that no longer exist: {stale}"
    assert not gone, f"BEHAVIOUR names modules that no longer exist: {gone}"
    assert not needless, f"BEHAVIOUR lists files whose name already follows the rule: {needless}"


def test_helpers_live_in_support_not_beside_the_tests() -> None:
    helpers = sorted(
        p.relative_to(ROOT).as_posix()
        for kind in (*KINDS, "e2e")
        for p in (ROOT / "tests" / kind).rglob("*.py")
        if "__pycache__" not in p.parts
        and not p.name.startswith("test_")
        and p.name not in ("__init__.py", "conftest.py")
    )
    assert not helpers, f"shared helpers belong in tests/support/: {helpers}"


def test_the_rule_refuses_the_names_it_replaced() -> None:
    modules = source_modules()
    refused = {
        "integration/test_retrain.py": {"loop.rounds.training"},  # no module is called `retrain`
        "integration/test_training.py": set(),  # rounds/ and cli/ both have a `training`
        "unit/test_training_data.py": {"loop.ml.dpo"},  # an aspect of a module it does not import
        "unit/test_audit.py": set(),  # acquisition/ and evaluation/ both have an `audit`
        "unit/loop/rounds/test_pvar.py": set(),  # pvar lives in loop/acquisition/
        "integration/test_gateway_push.py": set(),  # an aspect file must import its module
    }
    kept = {
        "unit/test_pvar.py": set(),
        "integration/loop/rounds/test_training.py": set(),
        "integration/test_gateway_push.py": {"annotation.gateway"},
        "integration/loop/test_report.py": set(),  # a package is a module too
    }
    assert all(problem(rel, modules, imports) for rel, imports in refused.items())
    assert all(problem(rel, modules, imports) is None for rel, imports in kept.items())
