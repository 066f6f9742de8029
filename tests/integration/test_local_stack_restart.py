"""Issue 11 points 1-3: labels survive the local Argilla stack's life.

`argilla down` stops the processes and keeps the data (it refuses while submitted answers are unpulled, unless
--force; `--purge` deletes the data); `argilla up` restarts a stopped or crashed stack in place and rebuilds the
in-memory search index from Argilla's database, so the annotators' queue and `pull` see every record and answer
again. A fresh stack in a tmp dir (not the session stack), stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import RewardJudge
from annotation.stack.local_stack import load_stack, stop_stack
from annotation.stack.processes import is_alive
from annotation.stack.services import free_port
from loop.cli.app import main
from storage.models import Label, Round
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator

pytestmark = [pytest.mark.argilla, pytest.mark.slow]


def _project(tmp_path: Path, monkeypatch, sqlite_url: str) -> Path:
    config = tmp_path / "pvar-loop.toml"
    port = free_port()  # `argilla up` uses [argilla] url's port: never 6900 in tests
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[argilla]\nurl = "http://127.0.0.1:{port}"\nworkspace = "ws-restart"\ndataset = "ds-restart"\n'
        "min_submitted = 1\n"
    )
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("PVAR_LOOP_ARGILLA_URL", raising=False)
    monkeypatch.delenv("PVAR_LOOP_ARGILLA_API_KEY", raising=False)
    return config


def _pull(cli: list[str], capsys) -> dict:
    assert main([*cli, "pull", "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _labels(uow) -> list[tuple[str, str]]:
    with uow() as s:
        return sorted((item, who) for item, who in s.execute(select(Label.item_id, Label.annotator)))


def _assert_still_private(root: Path) -> None:
    """What the stack keeps secret stays secret across restarts: 0700 root, 0600 files, no secret in logs or on
    command lines, Redis wants its password."""
    info = load_stack(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    private = [root / "stack.json", root / "home" / "argilla.db", root / "redis" / "redis.conf"]
    private += list((root / "logs").iterdir())
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in private} == {"0o600"}
    secrets_ = [info.api_key, info.password, info.redis_password]
    assert not [
        p for p in (root / "logs").iterdir() if any(x in p.read_text(errors="replace") for x in secrets_)
    ]
    for ref in info.processes.values():
        cmdline = Path(f"/proc/{ref.pid}/cmdline").read_bytes().decode(errors="replace")
        assert not any(x in cmdline for x in secrets_), ref.name
    with socket.create_connection(("127.0.0.1", info.ports["redis"]), timeout=2) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(64).startswith(b"-NOAUTH")


def test_answers_survive_down_up_and_a_crash(tmp_path, monkeypatch, sqlite_url, uow, capsys) -> None:
    config = _project(tmp_path, monkeypatch, sqlite_url)
    cli = ["--config", str(config)]
    root = tmp_path / "data" / "argilla"
    items = make_round_items(uow, 4)
    with uow() as s:  # a round that collects: push sends its items, pull decides them
        s.execute(update(Round).where(Round.id == items.round_id).values(status=RoundStatus.COLLECTING))
    assert main([*cli, "argilla", "up"]) == 0, capsys.readouterr().err
    try:
        info = load_stack(root)
        stack = ArgillaTarget(info.url, info.api_key, info.username, info.workspace, local=info)
        assert main([*cli, "push", "--round", "1"]) == 0, capsys.readouterr().err
        dataset_id = re.search(r"/dataset/([0-9a-f-]+)/annotation-mode", capsys.readouterr().out).group(1)
        ann = annotator(stack)
        judge = RewardJudge(lambda _p, r: float(len(r)), seed=1)
        with AnnotatorBot(stack.url, ann.api_key, judge) as bot:
            assert len(bot.pending(dataset_id)) == 4
            assert bot.run(dataset_id, limit=2).submitted == 2

        # (a) down refuses while answers are unpulled, naming the count; --force stops and keeps the data.
        assert main([*cli, "argilla", "down"]) == 2
        err = capsys.readouterr().err
        assert "2 submitted answers" in err and "pvar-loop pull" in err and "--force" in err
        assert all(is_alive(ref) for ref in info.processes.values())
        assert main([*cli, "argilla", "down", "--force"]) == 0
        assert "stopped: " in capsys.readouterr().out
        assert not any(is_alive(ref) for ref in info.processes.values())
        assert (root / "home" / "argilla.db").exists()
        assert main([*cli, "argilla", "status"]) == 0
        assert "stopped" in capsys.readouterr().out
        # Issue 26: [argilla] url names a port another process holds (the demo's config says 6900, its stack ran
        # elsewhere): `up` restarts the stack in place on its own port, with the same URL.
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            config.write_text(config.read_text().replace(stack.url, f"http://127.0.0.1:{taken}"))
            assert main([*cli, "argilla", "up"]) == 0, capsys.readouterr().err
            assert f"Argilla is up at {stack.url} (restarted" in capsys.readouterr().out
        info = load_stack(root)
        assert info.url == stack.url and info.api_key == stack.api_key
        assert main([*cli, "push", "--round", "1"]) == 0
        assert "nothing to push" in capsys.readouterr().out
        with AnnotatorBot(stack.url, ann.api_key, judge) as bot:
            assert len(bot.pending(dataset_id)) == 2  # the queue is back: the 2 unanswered records
        pulled = _pull(cli, capsys)
        assert (pulled["new_labels"], pulled["skipped"]) == (2, [])
        assert len(_labels(uow)) == 2

        # (b) a crash: every stack process SIGKILLed; `status` says so, `up` recovers in place.
        with AnnotatorBot(stack.url, ann.api_key, judge) as bot:
            assert bot.run(dataset_id, limit=1).submitted == 1
        for ref in info.processes.values():
            os.kill(ref.pid, signal.SIGKILL)
        assert main([*cli, "argilla", "status"]) == 1
        out = capsys.readouterr().out
        assert "crashed" in out and "pvar-loop argilla up" in out
        assert main([*cli, "argilla", "up"]) == 0, capsys.readouterr().err
        assert "recovered" in capsys.readouterr().out
        _assert_still_private(root)
        with AnnotatorBot(stack.url, ann.api_key, judge) as bot:
            assert len(bot.pending(dataset_id)) == 1
            assert bot.run(dataset_id).submitted == 1
        pulled = _pull(cli, capsys)
        assert (pulled["responses"], pulled["new_labels"], pulled["skipped"]) == (4, 2, [])
        labels = _labels(uow)
        assert labels == sorted((i, ann.username) for i in items.item_ids)  # every answer exactly once
        assert _pull(cli, capsys)["new_labels"] == 0
        with uow() as s:
            assert s.scalar(select(func.count(Label.id))) == 4

        # Nothing unpulled: a plain down stops and keeps the data.
        assert main([*cli, "argilla", "down"]) == 0
        assert (root / "home" / "argilla.db").exists()
    finally:
        stop_stack(root)
    # Deleting the data is explicit; a stopped stack's answers cannot be counted, so that takes --force too.
    assert main([*cli, "argilla", "down", "--purge"]) == 2
    assert "cannot be counted" in capsys.readouterr().err
    assert (root / "home" / "argilla.db").exists()
    assert main([*cli, "argilla", "down", "--purge", "--force"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == ["logs"]
