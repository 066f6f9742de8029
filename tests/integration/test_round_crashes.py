"""A round survives SIGKILL at every state: the scheduler is killed right after each step's work (before its
status moves) and restarted; the round completes with nothing duplicated in our DB or in Argilla."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import func, select

from annotation.dataset import open_dataset
from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import RewardJudge
from loop.config import load_config
from loop.evaluation.verifier import verify
from storage.db import UnitOfWork, make_engine
from storage.models import AnnotationItem, Checkpoint, Evaluation, Label, Prompt, Round, TrainingRun
from tests.support.argilla_helpers import annotator, external_ids, owner, unique
from tests.support.round_project import make_project

STATES = ["planned", "scored", "pushed", "collecting", "training", "evaluated"]


def _count(uow, model, *where):
    with uow() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


@pytest.mark.argilla
@pytest.mark.slow
def test_sigkill_at_every_state_then_resume(tmp_path, tiny_models, argilla_stack):
    db = f"sqlite:///{tmp_path / 'rounds.db'}"
    project = make_project(
        tmp_path, tiny_models, database_url=db, argilla=argilla_stack, dataset=unique("crash"), budget=4
    )
    assert project.cli("budget", "set", "0", "--from-round", "2").returncode == 0  # stop after round 1
    uow = UnitOfWork(make_engine(db))
    cfg = load_config(project.config)
    bot_user = annotator(argilla_stack, "crashbot")
    with uow() as s:
        constraints = {p.text: p.meta.get("constraints") for p in s.scalars(select(Prompt))}

    killed = []
    for state in STATES:
        if state == "collecting":  # the bot answers everything pushed, so collection can finish
            dataset = open_dataset(owner(argilla_stack), cfg.argilla.dataset, cfg.argilla.workspace)
            # No ties (tie_margin 0): every answer is a/b, so the round has something to train on.
            judge = RewardJudge(lambda p, r: verify(r, constraints[p]), seed=0)
            with AnnotatorBot(argilla_stack.url, bot_user.api_key, judge) as bot:
                assert bot.run(dataset.id).submitted == 4
        r = project.cli("run", "--once", "--wait", extra_env={"PVAR_LOOP_FAULT_AT": state})
        assert r.returncode == -signal.SIGKILL, f"{state}: rc {r.returncode}\n{r.stderr[-3000:]}"
        with uow() as s:
            killed.append(s.scalar(select(Round.status)))
    assert killed == STATES  # each kill left the round in the state whose work was done but not recorded

    r = project.cli("run", "--once", "--wait")
    assert r.returncode == 0, r.stderr[-3000:]
    with uow() as s:
        rounds = s.scalars(select(Round)).all()
        assert [(x.number, x.status) for x in rounds] == [(1, "done")]
        ckpt = rounds[0].policy_out
    assert _count(uow, AnnotationItem) == 4
    assert _count(uow, Label) == 4
    assert _count(uow, TrainingRun) == 1
    assert _count(uow, Checkpoint, Checkpoint.round_id.is_not(None)) == 1
    assert _count(uow, Evaluation) == 1 and _count(uow, Evaluation, Evaluation.checkpoint_id == ckpt) == 1
    ids = external_ids(argilla_stack, dataset.id)
    assert len(ids) == len(set(ids)) == 4
