"""[evaluation] judge = "human" end to end against the real Argilla server: after training, the round pushes
one comparison per eval prompt (new policy vs initial policy, sides swapped at random and never shown),
waits in `evaluating` while answers are missing (pushing again duplicates nothing), and once an annotator
has answered every record through Argilla's API stores a human Evaluation whose win rate is the one the
answers give with the swap undone, then closes."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select

from annotation.dataset import open_dataset
from annotation.records import shown_pair
from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import RewardJudge
from loop.config import load_config
from loop.evaluation.verifier import verify
from loop.rounds.state import Services, next_step, tick
from storage.db import UnitOfWork, make_engine
from storage.models import EvalComparison, Evaluation, Prompt, Round, TrainingRun
from tests.support.argilla_helpers import annotator, external_ids, owner, respond, unique
from tests.support.round_project import make_project

# What the annotator answers (the shown side) on: a record showing the policy as B, one showing it as A, the rest.
SHOWN = ["b", "a", "tie", "discard"]


def _round(uow) -> Round:
    with uow() as s:
        rnd = s.scalar(select(Round).where(Round.number == 1))
        s.expunge(rnd)
        return rnd


def _comparisons(uow) -> list[EvalComparison]:
    with uow() as s:
        rows = list(s.scalars(select(EvalComparison).order_by(EvalComparison.id)))
        s.expunge_all()
        return rows


def _records(stack, dataset_id: str) -> dict[str, dict]:
    r = httpx.get(
        f"{stack.url}/api/v1/datasets/{dataset_id}/records",
        params={"limit": 1000},
        headers=stack.headers,
        timeout=60,
    )
    r.raise_for_status()
    return {rec["external_id"]: rec for rec in r.json()["items"]}


def _tick_until(uow, cfg, status: str, limit: int = 8) -> None:
    for _ in range(limit):
        tick(uow, cfg, Services.default())
        if _round(uow).status == status:
            return
    raise AssertionError(f"round is {_round(uow).status}, expected {status}")


@pytest.mark.argilla
@pytest.mark.slow
def test_human_evaluation_round(tmp_path, tiny_models, argilla_stack):
    db = f"sqlite:///{tmp_path / 'human.db'}"
    project = make_project(
        tmp_path, tiny_models, database_url=db, argilla=argilla_stack, dataset=unique("heval")
    )
    text = project.config.read_text().replace('judge = "verifier"', 'judge = "human"\nhuman_prompts = 4')
    project.config.write_text(text)
    cfg = load_config(project.config, env=project.env)
    uow = UnitOfWork(make_engine(db))
    alice = annotator(argilla_stack, "alice")

    _tick_until(uow, cfg, "collecting")
    with uow() as s:
        constraints = {p.text: p.meta.get("constraints") for p in s.scalars(select(Prompt))}
    labels = open_dataset(owner(argilla_stack), cfg.argilla.dataset, cfg.argilla.workspace)
    with AnnotatorBot(
        argilla_stack.url, alice.api_key, RewardJudge(lambda p, r: verify(r, constraints[p]))
    ) as bot:
        assert bot.run(labels.id).submitted == 4

    # Training, then the comparisons go out; the process dies right after the push (before the round's
    # status moves): the next tick redoes the step without training again or duplicating a record.
    assert project.cli("round", "advance", "1").returncode == 0
    assert _round(uow).status == "training"
    crashed = project.cli("round", "advance", "1", extra_env={"PVAR_LOOP_FAULT_AT": "training"})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert _round(uow).status == "training" and len(_comparisons(uow)) == 4
    _tick_until(uow, cfg, "evaluating", limit=1)
    with uow() as s:
        assert len(s.scalars(select(TrainingRun)).all()) == 1
    rnd = _round(uow)
    assert rnd.policy_out and rnd.policy_out != rnd.policy_in
    rows = _comparisons(uow)
    assert len(rows) == 4 and {c.checkpoint_id for c in rows} == {rnd.policy_out}
    assert {c.reference_id for c in rows} == {rnd.policy_in}  # round 1: policy_in is the initial policy
    assert {c.policy_side for c in rows} == {"a", "b"}  # both sides drawn (seeded): the swap is tested
    evals = open_dataset(owner(argilla_stack), f"{cfg.argilla.dataset}-eval", cfg.argilla.workspace)
    records = _records(argilla_stack, evals.id)
    assert sorted(external_ids(argilla_stack, evals.id)) == sorted(
        c.id for c in rows
    )  # pushed twice, once each
    for c in rows:  # shown where the recorded side says, and nothing on the record tells which is which
        rec = records[c.id]
        shown_a, shown_b = shown_pair(rec["fields"])  # the dataset's side-by-side layout
        shown_policy = shown_a if c.policy_side == "a" else shown_b
        assert shown_policy == c.policy_text
        assert rnd.policy_out not in json.dumps(rec) and "policy" not in json.dumps(rec["metadata"] or {})

    # The annotator prefers the new policy's response where it is shown as B and where it is shown as A, then
    # answers tie and discards: read without undoing the swap the first would be a loss.
    b_side = next(c for c in rows if c.policy_side == "b")
    a_side = next(c for c in rows if c.policy_side == "a")
    rest = [c for c in rows if c not in (b_side, a_side)]
    rows = [b_side, a_side, *rest]
    # Half answered: still evaluating, `round status` says how far; pushing again duplicates nothing.
    for c, shown in zip(rows[:2], SHOWN[:2], strict=True):
        respond(argilla_stack, alice, records[c.id]["id"], "submitted", preference=shown)
    tick(uow, cfg, Services.default())
    assert _round(uow).status == "evaluating"
    with uow() as s:
        waits = next_step(s, cfg, s.get(Round, rnd.id)).waits
        assert s.scalar(select(Evaluation)) is None
    assert waits == "human evaluation: 2 of 4 comparisons answered"
    assert sorted(external_ids(argilla_stack, evals.id)) == sorted(c.id for c in rows)

    for c, shown in zip(rows[2:], SHOWN[2:], strict=True):
        values = {} if shown == "discard" else {"preference": shown}
        respond(
            argilla_stack,
            alice,
            records[c.id]["id"],
            "discarded" if shown == "discard" else "submitted",
            **values,
        )
    _tick_until(uow, cfg, "done")

    # The expected win rate from what was answered, the swap undone: the policy's side won 1, tie 0.5.
    outcomes = []
    for c, shown in zip(rows, SHOWN, strict=True):
        if shown == "discard":
            continue
        outcomes.append(0.5 if shown == "tie" else float(shown == c.policy_side))
    assert outcomes == [1.0, 1.0, 0.5]
    with uow() as s:
        ev = s.scalar(select(Evaluation).where(Evaluation.checkpoint_id == rnd.policy_out))
        assert ev.judge == "human" and ev.reference_id == rnd.policy_in
        assert ev.n_prompts == 3 and ev.win_rate == pytest.approx(sum(outcomes) / 3)
        assert ev.ci_low <= ev.win_rate <= ev.ci_high
        per_prompt = {p["prompt_id"]: p for p in ev.details["per_prompt"]}
        assert ev.details["annotators"] == [alice.username]
        assert sum(ev.details["votes"].values()) == 4 and ev.details["votes"]["discard"] == 1
        assert {p["policy_side"] for p in per_prompt.values()} == {c.policy_side for c in rows}
    assert _round(uow).status == "done"

    status = project.cli("status")
    assert status.returncode == 0, status.stderr
    assert f"{rnd.policy_out} vs {rnd.policy_in}: win rate {ev.win_rate:.3f}" in status.stdout
    assert "(human)" in status.stdout and "warning: [evaluation] judge" not in status.stdout
    project.config.write_text(text.replace('judge = "human"', 'judge = "reward"'))
    status = project.cli("status")
    assert "warning: [evaluation] judge = 'reward' is the selection reward model" in status.stdout


@pytest.mark.parametrize(("judge", "warned"), [("reward", True), ("verifier", False), ("human", False)])
def test_evaluation_logs_a_warning_when_the_judge_is_the_selection_reward_model(uow, caplog, judge, warned):
    from loop.config import parse_config
    from loop.rounds.evaluating import evaluate_checkpoint
    from loop.rounds.training import TrainingDataError

    cfg = parse_config({"evaluation": {"judge": judge}}, env={})
    with caplog.at_level("WARNING"), pytest.raises(TrainingDataError, match="no checkpoint 'nope'"):
        evaluate_checkpoint(cfg, uow, "nope")
    logged = [r for r in caplog.records if r.levelname == "WARNING" and "selection reward model" in r.message]
    assert bool(logged) is warned
