"""Issue 11 point 10: `status` says whether a scheduler is running (holder, last heartbeat) and whether new
rounds are paused and why."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta

from loop.cli.app import main
from storage.db import make_engine
from storage.locks import acquire


def _status(capsys) -> dict:
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_reports_the_scheduler_and_paused_rounds(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PVAR_LOOP_DATABASE_URL", raising=False)
    assert main(["init"]) == 0
    status = _status(capsys)
    assert status["scheduler"] == {"state": "not running"}
    assert status["new_rounds"] == {"paused": False, "next_round": 1, "budget": 64, "strategy": "pvar"}

    engine = make_engine(f"sqlite:///{tmp_path / '.pvar-loop' / 'pvar-loop.db'}")
    holder = f"{socket.gethostname()}:{os.getpid()}:feedbeef"
    acquire(
        engine, "scheduler", holder, stale_after=30, clock=lambda: datetime.now(UTC) - timedelta(seconds=4)
    )
    scheduler = _status(capsys)["scheduler"]
    assert scheduler["state"] == "running" and scheduler["holder"] == holder
    assert 3 <= scheduler["heartbeat_age_s"] < 60

    acquire(engine, "scheduler", holder, stale_after=30, clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    assert _status(capsys)["scheduler"]["state"] == "stale"  # no heartbeat for an hour: presumed dead
    engine.dispose()

    assert main(["budget", "set", "0"]) == 0
    paused = _status(capsys)["new_rounds"]
    assert paused["paused"] is True and "budget is 0 from round 1" in paused["why"]
    capsys.readouterr()
    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert f"scheduler: stale lease held by {holder}" in text
    assert "new rounds: paused (budget is 0 from round 1" in text
