"""The console script end to end: init, ingest, status, db, and a fast --help that imports no ML stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from loop.cli.app import main
from storage.migrate import head_revision


def _run(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-m", "loop.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_init_ingest_status(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PVAR_LOOP_DATABASE_URL", raising=False)
    monkeypatch.setenv(
        "HF_HUB_CACHE", str(tmp_path / "hub")
    )  # an empty cache: the default models are not here
    assert main(["init"]) == 0
    assert (tmp_path / "pvar-loop.toml").read_text().startswith("# pvar-loop configuration")
    # Issue 26: the defaults need no "flatters the policy" warning, and `init` says what to set.
    out = capsys.readouterr().out
    assert 'evaluation: judge = "human"' in out
    assert "[policy] model = 'HuggingFaceTB/SmolLM2-135M-Instruct' is not here" in out
    assert "`hf download Skywork/Skywork-Reward-V2-Llama-3.2-1B`" in out
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    (tmp_path / "e.jsonl").write_text('{"prompt": "c"}\n')
    assert main(["ingest", "p.jsonl"]) == 0
    assert main(["ingest", "e.jsonl", "--split", "eval"]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pool"]["prompts"] == {"train": 2, "eval": 1}
    assert status["pool"]["train_unscored"] == 2 and status["rounds"] == [] and status["answers"] == 0
    assert status["judge_warning"] is None


def test_init_writes_the_config_and_the_database_private(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PVAR_LOOP_DATABASE_URL", raising=False)
    old = os.umask(0o022)  # an ordinary umask: files would be 644
    try:
        assert main(["init"]) == 0
        (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n')
        assert main(["ingest", "p.jsonl"]) == 0  # a write: SQLite's -wal and -shm exist meanwhile
    finally:
        os.umask(old)
    db = next(tmp_path.rglob("pvar-loop.db"))
    for path in [tmp_path / "pvar-loop.toml", db, *db.parent.glob("pvar-loop.db-*")]:
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_commands_refuse_unmigrated_database(tmp_path):
    env = {"PVAR_LOOP_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    r = _run("status", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "pvar-loop init" in r.stderr
    r = _run("db", "upgrade", cwd=tmp_path, env=env)
    assert r.returncode == 0 and f"current revision: {head_revision()}" in r.stdout
    assert _run("status", cwd=tmp_path, env=env).returncode == 0


def test_bad_ingest_exits_2_with_message(tmp_path):
    env = {"PVAR_LOOP_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    _run("db", "upgrade", cwd=tmp_path, env=env)
    (tmp_path / "bad.jsonl").write_text('{"prompt": 1}\n')
    r = _run("ingest", "bad.jsonl", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "bad.jsonl: line 1: 'prompt' must be a string" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_config_exits_2_naming_key(tmp_path):
    (tmp_path / "pvar-loop.toml").write_text("[selection]\nbudgt = 3\n")
    r = _run("status", cwd=tmp_path)
    assert r.returncode == 2 and "[selection] budgt" in r.stderr and "budget" in r.stderr


def test_help_imports_no_ml_stack(tmp_path):
    code = (
        "import sys; from loop.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'datasets', 'argilla', 'sqlalchemy.orm') "
        "if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_experiment_reset_of_an_unknown_or_production_arm_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PVAR_LOOP_DATABASE_URL", raising=False)
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["experiment", "--reset-arm", "pvar"]) == 2
    assert "--reset-arm pvar: no rounds for arm 'pvar'; nothing to reset" in capsys.readouterr().err
    assert main(["experiment", "--reset-arm", "main"]) == 2
    assert "production history" in capsys.readouterr().err


def _project_env() -> dict[str, str]:
    """The environment without the overrides that would take the database or data dir out of the config."""
    return {k: v for k, v in os.environ.items() if k not in ("PVAR_LOOP_DATABASE_URL", "PVAR_LOOP_DATA_DIR")}


def _run_in_project(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "loop.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=_project_env(),
        timeout=120,
    )


def test_relative_data_dir_resolves_against_the_config_file(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    config = project / "pvar-loop.toml"
    config.write_text('[paths]\ndata_dir = "data"\n')
    r = _run_in_project("--config", "../project/pvar-loop.toml", "init", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert (project / "data" / "pvar-loop.db").is_file() and not (elsewhere / "data").exists()
    (elsewhere / "p.jsonl").write_text('{"prompt": "a"}\n{"prompt": 1}\n')
    r = _run_in_project("--config", str(config), "ingest", "p.jsonl", "--skip-invalid", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert len(list((project / "data" / "rejects").iterdir())) == 1
    r = _run_in_project("--config", str(config), "status", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["database"] == f"sqlite:///{project / 'data' / 'pvar-loop.db'}"
    assert status["pool"]["prompts"] == {"train": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "project"]


def test_read_only_commands_never_create_a_database(tmp_path):
    (tmp_path / "pvar-loop.toml").write_text('[paths]\ndata_dir = "data"\n')
    for command in (["status"], ["report"], ["db", "current"]):
        r = _run_in_project(*command, cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        [line] = r.stderr.strip().splitlines()
        assert f"no database at {tmp_path / 'data' / 'pvar-loop.db'}" in line and "pvar-loop init" in line
        assert not (tmp_path / "data").exists(), command
    r = _run_in_project("db", "upgrade", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _run_in_project("status", cwd=tmp_path).returncode == 0
