"""Issue 14 point 10: `pvar-loop run` logs one line per round transition and per pull that changed something,
not APScheduler's three lines per job run nor the Argilla SDK's "Logged in" per connection; `score` prints its
summary once. Issue 26: `round advance` through training prints our lines only, no library bars, warnings or
metrics dicts."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from storage.db import UnitOfWork, make_engine
from storage.models import AnnotationItem, Checkpoint, Label
from storage.statuses import RoundStatus
from tests.support.annotation_setup import CHECKPOINT, make_round_items
from tests.support.round_project import Project, make_project

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<msg>.*)$")


def _run_until(project: Project, log: Path, done, *, then_s: float, timeout: float = 240) -> str:
    """`pvar-loop run` until `done(log text)` holds, `then_s` seconds more, then SIGTERM; the log's text."""
    proc = project.popen("run", log=log)
    try:
        deadline = time.monotonic() + timeout
        while not done(log.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
        assert done(log.read_text()), log.read_text()
        time.sleep(then_s)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text()


def _records(text: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


def test_idle_scheduler_says_why_once_and_apscheduler_stays_quiet(tmp_path, tiny_models):
    project = make_project(tmp_path, tiny_models, database_url=f"sqlite:///{tmp_path / 'idle.db'}")
    assert project.cli("budget", "set", "0").returncode == 0
    # The tick job runs every 2 s: three more ticks after the first says why no round starts.
    text = _run_until(project, tmp_path / "run.log", lambda t: "new rounds are paused" in t, then_s=6)
    records = _records(text)
    assert not [m.group(0) for m in records if m["logger"].startswith("apscheduler")]
    assert sum("new rounds are paused" in m["msg"] for m in records) == 1, text  # said once, not per tick
    assert len(text.splitlines()) <= 5, text  # lock, paused, stopping (no per-tick chatter)


@pytest.mark.slow
@pytest.mark.argilla
def test_a_collecting_round_logs_transitions_not_chatter(tmp_path, tiny_models, argilla_stack):
    project = make_project(
        tmp_path,
        tiny_models,
        database_url=f"sqlite:///{tmp_path / 'rounds.db'}",
        argilla=argilla_stack,
        dataset="log-volume",
    )
    # Collecting ticks pull (and connect to Argilla) every 2 s: five more of them after collection opens.
    text = _run_until(project, tmp_path / "run.log", lambda t: "pushed -> collecting" in t, then_s=10)
    records = _records(text)
    assert not [m.group(0) for m in records if m["logger"].startswith("apscheduler")], text
    assert "Logged in" not in text  # the SDK's message is DEBUG at default verbosity
    transitions = [m["msg"] for m in records if m["logger"] == "loop.rounds.state"]
    assert transitions == [
        "round main/1 planned: pvar, budget 4",
        "round main/1: planned -> scored",
        "round main/1: scored -> pushed",
        "round main/1: pushed -> collecting",
    ], text
    assert not [m for m in records if m["msg"].startswith("tick: round")], text  # ticks restate nothing
    # Lock, 4 transitions, scoring and push summaries, stopping: nothing per tick (pulls found no answers).
    assert len(records) <= 10, text


def test_score_prints_its_summary_once(tmp_path, tiny_models):
    project = make_project(tmp_path, tiny_models, database_url=f"sqlite:///{tmp_path / 'score.db'}")
    r = project.cli("score", "--no-progress")
    assert r.returncode == 0, r.stderr
    both = r.stdout + r.stderr
    assert len(re.findall(r"scored \d+ prompts \(K=3\)", both)) == 1, both


# What a `round advance` through training used to print around our own lines (issue 26).
LIBRARY_NOISE = (
    "Loading weights",
    "Tokenizing train dataset",
    "Writing model shards",
    "Warning",  # FutureWarning, UserWarning, ... from the libraries
    "train_runtime",  # the Trainer's metrics dict
    "it/s",
)


@pytest.mark.slow
def test_round_advance_through_training_prints_one_line_per_step(tmp_path, tiny_models):
    project = make_project(tmp_path, tiny_models, database_url=f"sqlite:///{tmp_path / 'train.db'}")
    uow = UnitOfWork(make_engine(f"sqlite:///{tmp_path / 'train.db'}"))
    items = make_round_items(uow, 4, status=RoundStatus.TRAINING)
    with uow() as s:  # four items decided by one annotator, sampled from the tiny policy
        s.get(Checkpoint, CHECKPOINT).path = str(tiny_models.policy_dir)
        for item_id in items.item_ids:
            item = s.get(AnnotationItem, item_id)
            item.status, item.decision = "decided", "a"
            s.add(Label(item_id=item_id, annotator="alice", choice="a"))
    r = project.cli("round", "advance", "1")
    assert r.returncode == 0, r.stderr
    both = r.stdout + r.stderr
    assert not [n for n in LIBRARY_NOISE if n in both], both
    assert r.stdout.splitlines() == [
        "round 1: training -> evaluated",
        "next: pvar-loop round advance 1 (close the round; the next one samples with its policy)",
    ]
    records = _records(r.stderr)
    assert len(records) == len(r.stderr.splitlines()), r.stderr  # every line is a log line: no bars
    assert {m["level"] for m in records} == {"INFO"}, r.stderr
    assert {m["logger"].split(".")[0] for m in records} == {"loop"}, r.stderr
    assert any("DPO: 1 steps" in m["msg"] for m in records) and "training -> evaluated" in records[-1]["msg"]
