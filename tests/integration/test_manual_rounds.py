"""The operator's path by hand: every state of a round has a command that moves it exactly as the scheduler
would, `round status`/`status` name that command and never show stale numbers, and the by-hand section of the
operator's guide (docs/operators.md) works when run command by command (labels submitted through Argilla's
annotator API)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annotation.dataset import open_dataset
from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import RewardJudge
from loop.config import load_config
from loop.evaluation.verifier import verify
from loop.rounds.scheduler import LOCK
from storage.db import UnitOfWork, make_engine
from storage.locks import acquire, release
from storage.models import Evaluation, Label, Prompt, Round, TrainingRun
from tests.support.argilla_helpers import annotator, owner, unique
from tests.support.round_project import make_project

OPERATORS = Path(__file__).resolve().parents[2] / "docs" / "operators.md"


def _round(uow, number: int = 1) -> Round:
    with uow() as s:
        rnd = s.scalar(select(Round).where(Round.number == number))
        s.expunge(rnd)
        return rnd


def _count(uow, model, *where) -> int:
    with uow() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _label_everything(project, argilla_stack, uow, api_key: str) -> int:
    """An annotator answers every pending record through Argilla's annotator API (no ties: a/b only)."""
    cfg = load_config(project.config)
    with uow() as s:
        constraints = {p.text: p.meta.get("constraints") for p in s.scalars(select(Prompt))}
    dataset = open_dataset(owner(argilla_stack), cfg.argilla.dataset, cfg.argilla.workspace)
    judge = RewardJudge(lambda p, r: verify(r, constraints[p]), seed=0)
    with AnnotatorBot(argilla_stack.url, api_key, judge) as bot:
        return bot.run(dataset.id).submitted


def _ok(r) -> str:
    assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def guide_by_hand_commands() -> list[str]:
    """The command lines of docs/operators.md's "By hand" section, in order (comment lines kept as markers)."""
    text = OPERATORS.read_text(encoding="utf-8")
    section = text.split("### By hand", 1)[1].split("\n### ", 1)[0]
    block = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert block, "docs/operators.md has no by-hand command block"
    return [re.sub(r"\s+#\s.*$", "", line) if line.startswith("pvar-loop") else line for line in block]


@pytest.mark.argilla
@pytest.mark.slow
def test_guide_by_hand_section_runs_a_round(tmp_path, tiny_models, argilla_stack):
    """Walk docs/operators.md's by-hand section: after each `round advance` the round is one state further, and
    the round ends `done` with a checkpoint, one training run and one evaluation, as the scheduler would leave it."""
    db = f"sqlite:///{tmp_path / 'byhand.db'}"
    project = make_project(
        tmp_path, tiny_models, database_url=db, argilla=argilla_stack, dataset=unique("byhand"), ingest=False
    )
    uow = UnitOfWork(make_engine(db))
    files = {"prompts.jsonl": "prompts/train.jsonl", "eval.jsonl": "prompts/eval.jsonl"}
    name = unique("alice")
    # The session's Argilla stack is the one the project points at (PVAR_LOOP_ARGILLA_URL); a second stack
    # would only cost a minute and a GiB.
    skipped = {"pvar-loop argilla up"}
    walked, advances, api_key = [], [], None
    for line in guide_by_hand_commands():
        if line.startswith("#"):
            if "label" in line:
                assert api_key is not None, "the guide labels before adding an annotator"
                assert _label_everything(project, argilla_stack, uow, api_key) == 4
                walked.append("<label>")
            continue
        if line in skipped:
            walked.append(line)
            continue
        args = line.split()[1:]
        args = [str(tmp_path / files[a]) if a in files else a for a in args]
        args = [name if a == "alice" else a for a in args]
        before = _round(uow).status if args[:2] == ["round", "advance"] else None
        out = _ok(project.cli(*args))
        walked.append(line)
        if args[:2] == ["annotators", "add"]:
            api_key = re.search(r"API key:\s+(\S+)", out).group(1)
        if before is not None:
            advances.append((str(before), str(_round(uow).status)))
            assert "next:" in out or "done" in out, out
    assert "<label>" in walked and "pvar-loop report" in walked
    assert advances == [
        ("planned", "scored"),
        ("scored", "pushed"),
        ("pushed", "collecting"),
        ("collecting", "training"),
        ("training", "evaluated"),
        ("evaluated", "done"),
    ]
    rnd = _round(uow)
    assert rnd.policy_out and rnd.policy_out != rnd.policy_in
    assert _count(uow, Label) == 4
    assert _count(uow, TrainingRun) == 1
    assert _count(uow, Evaluation, Evaluation.checkpoint_id == rnd.policy_out) == 1
    report = json.loads((tmp_path / "data" / "report" / "report.json").read_text())
    assert "no evaluations yet" not in json.dumps(report["verdict"])


@pytest.mark.argilla
@pytest.mark.slow
def test_every_state_names_its_by_hand_command(tmp_path, tiny_models, argilla_stack):
    """`push` on a round without items does not say "nothing to push" (exit 0) but names the command that
    moves it; `round status` names the next command of the open round; `round advance` while a scheduler holds
    the lease is recorded for it (tests/integration/loop/rounds/test_operator_commands.py), and a closed or unknown round
    is refused, each in one line with exit 2."""
    db = f"sqlite:///{tmp_path / 'next.db'}"
    project = make_project(
        tmp_path, tiny_models, database_url=db, argilla=argilla_stack, dataset=unique("next")
    )
    uow = UnitOfWork(make_engine(db))
    _ok(project.cli("round", "start"))
    r = project.cli("push", "--round", "1")  # the by-hand next step used to say "nothing to push", exit 0
    assert "nothing to push" not in r.stdout
    assert r.returncode == 2, r.stdout + r.stderr
    assert "round advance 1" in r.stderr and "Traceback" not in r.stderr
    assert "next: pvar-loop round advance 1" in _ok(project.cli("round", "status"))
    status = json.loads(_ok(project.cli("round", "status", "--json")))
    assert status[0]["next"]["command"] == "pvar-loop round advance 1"

    engine = make_engine(db)
    # A scheduler elsewhere whose heartbeat is fresh for the whole check (dated an hour ahead).
    acquire(engine, LOCK, "other-host:1:abc", 3600, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    try:
        r = project.cli("round", "advance", "1")
        assert r.returncode == 0 and "scheduler other-host:1:abc is running" in r.stdout, r.stdout + r.stderr
        assert "operator command #1" in r.stdout and _round(uow).status == "planned"
    finally:
        release(engine, LOCK, "other-host:1:abc")

    assert "planned -> scored" in _ok(project.cli("round", "advance", "1"))
    out = _ok(project.cli("round", "advance", "1"))
    assert "scored -> pushed" in out and "metadata=round.ge1.le1" in out, out  # the priority link
    assert "annotate at" in _ok(project.cli("round", "status"))
    assert _round(uow).status == "pushed"
    out = _ok(project.cli("push", "--round", "1"))  # the by-hand push moves the round as the scheduler would
    assert _round(uow).status == "collecting", out
    assert "next: pvar-loop round advance 1" in _ok(project.cli("round", "status"))

    r = project.cli("round", "advance", "7")
    assert r.returncode == 2 and "no round 7" in r.stderr, r.stderr
    _ok(project.cli("round", "cancel", "1"))
    r = project.cli("round", "advance", "1")
    assert r.returncode == 2 and "cancelled" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "next: pvar-loop round start" in _ok(project.cli("round", "status"))


@pytest.mark.argilla
@pytest.mark.postgres
@pytest.mark.slow
def test_train_and_evaluate_by_hand_move_the_round(tmp_path, tiny_models, argilla_stack, postgres_url):
    """Labels pulled by hand, then `train` and `evaluate` by hand: the round ends `done` with that checkpoint
    as its policy (as the scheduler leaves it), `status` shows live numbers, and `report` shows the evaluation
    that `status` lists."""
    project = make_project(
        tmp_path, tiny_models, database_url=postgres_url, argilla=argilla_stack, dataset=unique("manual")
    )
    uow = UnitOfWork(make_engine(postgres_url))
    _ok(project.cli("budget", "set", "0", "--from-round", "2"))
    _ok(project.cli("run", "--once"))  # the scheduler takes round 1 to collecting (nothing answered yet)
    assert _round(uow).status == "collecting"
    r = project.cli("train", "--round", "1")  # nothing answered: refused, nothing trained
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert _count(uow, TrainingRun) == 0 and _round(uow).status == "collecting"

    assert _label_everything(project, argilla_stack, uow, annotator(argilla_stack, "manual").api_key) == 4
    _ok(project.cli("pull"))
    status = _ok(project.cli("status"))
    assert "0 of 4 items answered" not in status, status
    row = next(line.split() for line in status.splitlines() if line.strip().startswith("main/1"))
    assert (row[5], row[8]) == ("4", "4"), status  # the rounds table: answered, answers
    assert "next: pvar-loop round advance 1" in status, status

    out = _ok(project.cli("train", "--round", "1"))
    rnd = _round(uow)
    assert rnd.status == "done", out
    assert rnd.policy_out and rnd.policy_out in out
    out = _ok(project.cli("evaluate"))
    assert rnd.policy_out in out
    assert "mean score" in out and "(4 samples per prompt)" in out, out  # [evaluation] samples_per_prompt
    assert _count(uow, TrainingRun) == 1
    assert _count(uow, Evaluation) == 1 and _count(
        uow, Evaluation, Evaluation.checkpoint_id == rnd.policy_out
    )

    status = json.loads(_ok(project.cli("status", "--json")))
    assert [e["checkpoint"] for e in status["evaluations"]] == [rnd.policy_out]
    ev = status["evaluations"][0]
    assert ev["score_ci"][0] <= ev["score_mean"] <= ev["score_ci"][1]
    assert "mean score" in _ok(project.cli("status"))
    assert status["rounds"][0]["status"] == "done" and status["rounds"][0]["next"] is None
    _ok(project.cli("report"))
    report = json.loads((tmp_path / "data" / "report" / "report.json").read_text())
    assert "no evaluations yet" not in json.dumps(report["verdict"])
    assert [r["eval"]["checkpoint_id"] for r in report["rounds"]] == [rnd.policy_out]
    assert report["rounds"][0]["eval"]["score_mean"] == ev["score_mean"]
