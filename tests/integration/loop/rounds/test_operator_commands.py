"""`round cancel N` / `round advance N` while a scheduler holds the lease: recorded in operator_commands, carried
out by the scheduler at its next tick under its fenced unit of work, and shown pending, then done, by `status`.
The fast tests stand in for the scheduler with a live lease row and the tick's own function; the slow one runs
`pvar-loop run` for real against the session's Argilla."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loop.cli.app import main
from loop.config import load_config
from loop.rounds.operator_commands import carry_out_pending
from loop.rounds.scheduler import LOCK
from loop.rounds.state import Services
from storage.db import UnitOfWork, make_engine
from storage.locks import LeaseLost, acquire, lease_fence, release
from storage.models import OperatorCommand, Round
from tests.support.argilla_helpers import unique
from tests.support.round_project import make_project

SCHEDULER = "other-host:1:abc"


@pytest.fixture
def project(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", url)
    monkeypatch.setenv("PVAR_LOOP_ACTOR", "alice")
    assert main(["db", "upgrade"]) == 0
    (tmp_path / "p.jsonl").write_text("".join(f'{{"prompt": "p{i}"}}\n' for i in range(5)))
    assert main(["ingest", "p.jsonl"]) == 0
    assert main(["round", "start"]) == 0
    engine = make_engine(url)
    # A scheduler elsewhere whose heartbeat stays fresh for the whole test (dated an hour ahead).
    acquire(engine, LOCK, SCHEDULER, 3600, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    yield engine
    release(engine, LOCK, SCHEDULER)
    engine.dispose()


def _round(engine) -> Round:
    with UnitOfWork(engine)() as s:
        return s.scalar(select(Round).where(Round.number == 1))


def _commands(engine) -> list[tuple[str, str, str | None]]:
    with UnitOfWork(engine)() as s:
        rows = s.scalars(select(OperatorCommand).order_by(OperatorCommand.id))
        return [(c.command, str(c.state), c.outcome) for c in rows]


def test_cancel_while_a_scheduler_runs_is_queued_then_carried_out_under_its_lease(project, capsys):
    """Used to be refused ("stop it to work by hand"); now recorded, pending in `status`, and done by the
    scheduler's tick function; a tick whose lease is gone records nothing and leaves the command pending."""
    capsys.readouterr()
    assert main(["round", "cancel", "1", "--reason", "bad prompts"]) == 0
    out = capsys.readouterr().out
    assert f"scheduler {SCHEDULER} is running" in out and "operator command #1" in out, out
    assert _round(project).status == "planned"
    assert _commands(project) == [("cancel", "pending", None)]
    assert main(["status"]) == 0
    assert "#1 cancel round 1 by alice" in capsys.readouterr().out

    cfg = load_config(None)
    lost = UnitOfWork(project, fence=lease_fence(LOCK, "a-scheduler-that-lost-it"))
    with pytest.raises(LeaseLost):
        carry_out_pending(lost, cfg, Services.default())
    assert _round(project).status == "planned" and _commands(project)[0][1] == "pending"

    assert (
        carry_out_pending(UnitOfWork(project, fence=lease_fence(LOCK, SCHEDULER)), cfg, Services.default())
        == 1
    )
    rnd = _round(project)
    assert (rnd.status, rnd.reason) == ("cancelled", "bad prompts")
    [(_, state, outcome)] = _commands(project)
    assert state == "done" and "round 1 cancelled" in outcome, outcome
    assert main(["status", "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["operator_commands"]
    assert (shown["state"], shown["actor"], shown["round"]) == ("done", "alice", 1)


def test_a_command_on_an_unknown_round_is_refused_at_once_not_queued(project, capsys):
    assert main(["round", "cancel", "9"]) == 2
    assert "error: no round 9" in capsys.readouterr().err
    assert main(["round", "advance", "9"]) == 2
    assert _commands(project) == []


@pytest.mark.argilla
@pytest.mark.slow
def test_running_scheduler_carries_out_advance_and_cancel(tmp_path, tiny_models, argilla_stack):
    """`pvar-loop run` for real: its push line gives the priority link, `round status`/`status` show it while
    the round collects, and `round advance 1` then `round cancel 1` given meanwhile are done at its next ticks
    (its log and `status` say so); the cancel takes the round's records out of Argilla."""
    db = f"sqlite:///{tmp_path / 'run.db'}"
    project = make_project(
        tmp_path, tiny_models, database_url=db, argilla=argilla_stack, dataset=unique("ops")
    )
    engine = make_engine(db)
    assert project.cli("budget", "set", "0", "--from-round", "2").returncode == 0  # one round only
    log = tmp_path / "run.log"
    proc = project.popen("run", log=log)
    try:
        _wait_for(lambda: _round(engine) is not None and _round(engine).status == "collecting", 300, log)
        text = log.read_text()
        assert "annotate at " in text and "metadata=round.ge1.le1" in text, text
        assert "sort=metadata.priority.asc" in text
        link = next(w for w in text.split() if "metadata=round.ge1.le1" in w)
        for args in (["round", "status"], ["status"]):
            r = project.cli(*args)
            assert r.returncode == 0 and link in r.stdout, r.stdout + r.stderr

        r = project.cli("round", "advance", "1")
        assert r.returncode == 0 and "operator command #1" in r.stdout, r.stdout + r.stderr
        _wait_for(lambda: "operator command #1" in log.read_text(), 120, log)
        assert _commands(engine)[0][:2] == ("advance", "done")
        assert "round 1: still collecting" in _commands(engine)[0][2]

        r = project.cli("round", "cancel", "1", "--reason", "wrong prompts")
        assert r.returncode == 0 and "operator command #2" in r.stdout, r.stdout + r.stderr
        _wait_for(lambda: _round(engine).status == "cancelled", 120, log)
        _wait_for(lambda: _commands(engine)[1][1] == "done", 30, log)
        assert "withdrew 4 waiting records from Argilla" in _commands(engine)[1][2], _commands(engine)
        assert "operator command #2 by test, cancel round 1 (wrong prompts): done" in log.read_text()
        r = project.cli("status")
        status = r.stdout + r.stderr
        assert "#2 cancel round 1 by test" in status and ": done at " in status, status
        assert link not in status  # a cancelled round is no longer ready for annotators
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
            engine.dispose()


def _wait_for(predicate, timeout: float, log) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out; scheduler log:\n{log.read_text()[-4000:]}")
