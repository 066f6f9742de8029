"""`pvar-loop annotators add`, `push`, `pull` and `argilla up|status|down` against real Argilla servers."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import RewardJudge
from loop.cli.app import main
from storage.models import AnnotationItem, Label
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator, external_ids, respond, unique

pytestmark = pytest.mark.argilla


def _project(
    tmp_path: Path, monkeypatch, sqlite_url: str, dataset: str, workspace: str, port: int | None = None
) -> Path:
    """A config; `port` becomes [argilla] url's (the one `argilla up` uses: never 6900 in tests)."""
    config = tmp_path / "pvar-loop.toml"
    url = f'url = "http://127.0.0.1:{port}"\n' if port else ""
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[argilla]\n{url}workspace = "{workspace}"\ndataset = "{dataset}"\nmin_submitted = 1\n'
    )
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("PVAR_LOOP_ARGILLA_URL", raising=False)
    monkeypatch.delenv("PVAR_LOOP_ARGILLA_API_KEY", raising=False)
    return config


def test_annotators_push_pull_commands(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    items = make_round_items(uow, 6, status=RoundStatus.COLLECTING)
    config = _project(tmp_path, monkeypatch, sqlite_url, unique("ds-cli"), argilla_stack.workspace)
    cli = ["--config", str(config)]

    assert main([*cli, "push", "--round", "1"]) == 2
    assert "no Argilla API key" in capsys.readouterr().err

    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", argilla_stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", argilla_stack.api_key)
    name = unique("cli-ann")
    assert main([*cli, "annotators", "add", name]) == 0
    out = capsys.readouterr().out
    assert f"sign in at: {argilla_stack.url}/sign-in" in out and f"username:   {name}" in out
    api_key = re.search(r"API key:\s+(\S+)", out).group(1)
    assert re.search(r"password:\s+(\S{8,})", out)
    assert main([*cli, "annotators", "add", name]) == 2
    assert "already exists" in capsys.readouterr().err

    assert main([*cli, "push", "--round", "7"]) == 2
    assert "no round main/7" in capsys.readouterr().err
    assert main([*cli, "push", "--round", "1", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "pushed 6 items of round main/1" in out
    dataset_id = re.search(r"/dataset/([0-9a-f-]+)/annotation-mode", out).group(1)
    assert main([*cli, "push", "--round", "1"]) == 0
    assert "nothing to push" in capsys.readouterr().out
    assert sorted(external_ids(argilla_stack, dataset_id)) == items.item_ids

    # Another annotator saves a draft (a real one, through the API the UI uses) and never submits it.
    drafter = annotator(argilla_stack, "drafter")
    with uow() as s:
        record_id = s.scalar(
            select(AnnotationItem.argilla_record_id).where(AnnotationItem.id == items.item_ids[0])
        )
    respond(argilla_stack, drafter, record_id, "draft", preference="a")
    with AnnotatorBot(argilla_stack.url, api_key, RewardJudge(lambda _p, r: float(len(r)), seed=1)) as bot:
        assert bot.run(dataset_id).submitted == 6
    assert main([*cli, "pull", "--round", "1", "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert (pulled["new_labels"], pulled["decided"] + pulled["ties"], pulled["skipped"]) == (6, 6, [])
    assert (pulled["drafts"], pulled["drafts_by_annotator"]) == (1, {drafter.username: 1})
    assert pulled["round_progress"] == {"total": 6, "completed": 6, "pending": 0}
    assert main([*cli, "pull"]) == 0
    out = capsys.readouterr().out
    assert "0 new answers" in out and " ties, " in out
    assert f"1 draft not submitted ({drafter.username}: 1)" in out
    with uow() as s:
        assert s.scalar(select(func.count(Label.id))) == 6  # the draft is not a label
        assert set(s.scalars(select(AnnotationItem.status))) == {"decided"}
    assert caplog.records and api_key not in caplog.text and argilla_stack.api_key not in caplog.text


@pytest.mark.slow
def test_argilla_up_status_down(tmp_path, monkeypatch, sqlite_url, capsys) -> None:
    from annotation.stack.services import free_port

    port = free_port()
    config = _project(tmp_path, monkeypatch, sqlite_url, "ds", "ws-cli", port)
    cli = ["--config", str(config)]
    assert main([*cli, "argilla", "status"]) == 0
    assert "no local Argilla stack" in capsys.readouterr().out
    code = main([*cli, "argilla", "up"])
    try:
        out, err = capsys.readouterr()
        assert code == 0, err
        url = re.search(r"Argilla is up at (\S+)", out).group(1)
        assert url == f"http://127.0.0.1:{port}"  # the port of [argilla] url
        assert f"{url}/sign-in" in out and "stack.json" in out
        state = json.loads((tmp_path / "data" / "argilla" / "stack.json").read_text())
        assert state["api_key"] not in out and state["password"] not in out
        assert main([*cli, "argilla", "up"]) == 0  # already up: says where, starts nothing
        out = capsys.readouterr().out
        assert f"Argilla is already up at {url}" in out and "nothing started" in out
        assert "`pvar-loop argilla status`" in out and "`pvar-loop status`" in out
        assert json.loads((tmp_path / "data" / "argilla" / "stack.json").read_text()) == state
        assert main([*cli, "argilla", "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["running"] and set(status["processes"]) == {"redis", "osmem", "server", "worker"}
        # No key configured: commands use the local stack's owner key from its state file.
        assert main([*cli, "annotators", "add", "alice"]) == 0
        assert "username:   alice" in capsys.readouterr().out
    finally:
        assert main([*cli, "argilla", "down"]) == 0
    assert "stopped: " in capsys.readouterr().out
    assert main([*cli, "argilla", "status"]) == 0
    assert "stopped, data kept" in capsys.readouterr().out
    assert main([*cli, "argilla", "down", "--purge", "--force"]) == 0
    assert sorted(p.name for p in (tmp_path / "data" / "argilla").iterdir()) == ["logs"]
