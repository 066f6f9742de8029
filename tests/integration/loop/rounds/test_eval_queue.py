"""A human evaluation's records get a round's care, against the session's Argilla: past
`[evaluation] human_deadline_hours` the win rate is stored over what was answered (none answered: blocked)
and the unanswered records leave the queue; an excluded annotator's answers are kept, not counted; a
cancelled round's evaluation records are withdrawn, their answers stored first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from annotation.dataset import open_dataset
from loop.config import load_config
from loop.rounds.human_evaluation import eval_dataset_name, evaluate_by_humans, evaluation_waits
from loop.rounds.state import cancel_round
from loop.rounds.steps import withdraw
from loop.rounds.waits import Wait, WaitKind
from storage.models import EvalComparison, Evaluation, Prompt
from storage.repositories.checkpoints import ensure_checkpoint, ensure_initial_checkpoint
from storage.repositories.eval_comparisons import add_comparisons
from storage.repositories.exclusions import add_exclusion
from storage.statuses import RoundStatus
from tests.support.annotation_setup import make_round_items, prompt_id
from tests.support.argilla_helpers import annotator, owner, respond, unique

pytestmark = pytest.mark.argilla
CHECKPOINT = "round-1-policy"


def _setup(uow, tmp_path, monkeypatch, stack, n: int = 4):
    config = tmp_path / "pvar-loop.toml"
    config.write_text(
        f'[policy]\nmodel = "initial-policy"\n\n[argilla]\nworkspace = "{stack.workspace}"\n'
        f'dataset = "{unique("heval")}"\n\n[evaluation]\njudge = "human"\nhuman_deadline_hours = 2\n'
    )
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", stack.api_key)
    cfg = load_config(config)
    rnd = make_round_items(uow, 1, status=RoundStatus.EVALUATING)
    texts = [f"eval prompt {i} {tmp_path.name}" for i in range(n)]
    with uow() as s:
        reference = ensure_initial_checkpoint(s, cfg.policy.model)
        ensure_checkpoint(s, CHECKPOINT, "trained")
        s.execute(update_checkpoint_round(rnd.round_id))
        s.add_all(Prompt(id=prompt_id(t), text=t, source="test", split="eval", meta={}) for t in texts)
        s.flush()
        add_comparisons(
            s,
            [
                {
                    "id": f"cmp-{tmp_path.name}-{i}",
                    "checkpoint_id": CHECKPOINT,
                    "reference_id": reference,
                    "prompt_id": prompt_id(t),
                    "policy_text": f"policy answer {i}",
                    "reference_text": f"reference answer {i}",
                    "policy_side": "a",
                    "min_submitted": 1,
                    "answers": {},
                }
                for i, t in enumerate(texts)
            ],
        )
    return cfg, rnd


def update_checkpoint_round(round_id: int):
    from storage.models import Checkpoint

    return update(Checkpoint).where(Checkpoint.id == CHECKPOINT).values(round_id=round_id)


def _records(stack, cfg) -> dict[str, str]:
    """{comparison id: record id} of the evaluation dataset's records."""
    dataset = open_dataset(owner(stack), eval_dataset_name(cfg), cfg.argilla.workspace)
    r = httpx.get(
        f"{stack.url}/api/v1/datasets/{dataset.id}/records",
        params={"limit": 1000},
        headers=stack.headers,
        timeout=60,
    )
    r.raise_for_status()
    return {rec["external_id"]: rec["id"] for rec in r.json()["items"]}


def _comparisons(uow) -> list[tuple]:
    with uow() as s:
        return [(c.id, dict(c.answers), c.argilla_record_id) for c in s.scalars(select(EvalComparison))]


def _age(uow, hours: float) -> None:
    with uow() as s:
        s.execute(update(EvalComparison).values(created_at=datetime.now(UTC) - timedelta(hours=hours)))


def test_deadline_stores_what_was_answered_without_the_excluded_and_withdraws_the_rest(
    uow, tmp_path, monkeypatch, argilla_stack
) -> None:
    cfg, _ = _setup(uow, tmp_path, monkeypatch, argilla_stack)
    careful, careless = annotator(argilla_stack, "careful"), annotator(argilla_stack, "careless")

    waits = evaluate_by_humans(cfg, uow, CHECKPOINT)
    assert isinstance(waits, Wait) and waits.kind == WaitKind.HUMAN_EVALUATION
    assert "0 of 4 comparisons answered, deadline" in waits.reason
    _age(uow, 3)  # past the 2-hour deadline with nothing answered: blocked, nothing stored
    waits = evaluate_by_humans(cfg, uow, CHECKPOINT)
    assert isinstance(waits, Wait) and waits.kind == WaitKind.BLOCKED, waits
    assert "deadline passed with no comparison answered" in waits.reason
    with uow() as s:  # what `round status` says, from the database
        assert evaluation_waits(s, cfg, CHECKPOINT).kind == WaitKind.BLOCKED

    records = _records(argilla_stack, cfg)
    ids = sorted(records)
    respond(argilla_stack, careful, records[ids[0]], "submitted", preference="a")  # policy wins
    respond(argilla_stack, careful, records[ids[1]], "submitted", preference="b")  # reference wins
    respond(argilla_stack, careless, records[ids[2]], "submitted", preference="a")
    with uow() as s:
        add_exclusion(s, careless.username, "alice", "always a")

    evaluation = evaluate_by_humans(cfg, uow, CHECKPOINT)
    assert isinstance(evaluation, Evaluation), evaluation
    assert (evaluation.n_prompts, evaluation.win_rate) == (2, 0.5)  # careless' answer kept, not counted
    details = evaluation.details
    assert details["excluded_annotators"] == [careless.username]
    assert (details["deadline_passed"], details["unanswered"]) == (True, 2)
    assert set(_records(argilla_stack, cfg)) == set(ids[:2])  # the unanswered left the queue
    stored = {cid: (answers, rid) for cid, answers, rid in _comparisons(uow)}
    assert stored[ids[2]] == ({careless.username: "policy"}, None)
    assert stored[ids[3]] == ({}, None)


def test_cancelled_round_withdraws_its_evaluation_records_answers_stored_first(
    uow, tmp_path, monkeypatch, argilla_stack
) -> None:
    cfg, rnd = _setup(uow, tmp_path, monkeypatch, argilla_stack, n=3)
    bob = annotator(argilla_stack, "bob")
    assert isinstance(evaluate_by_humans(cfg, uow, CHECKPOINT), Wait)
    records = _records(argilla_stack, cfg)
    first = sorted(records)[0]
    respond(argilla_stack, bob, records[first], "submitted", preference="tie")

    cancel_round(uow, rnd.round_number, "wrong checkpoint")
    report = withdraw(cfg, uow)
    assert report is not None and report.evaluation_records == 3
    assert _records(argilla_stack, cfg) == {}
    stored = {cid: (answers, rid) for cid, answers, rid in _comparisons(uow)}
    assert stored[first] == ({bob.username: "tie"}, None)  # pulled before the delete
    assert all(rid is None for _, rid in stored.values())
    assert withdraw(cfg, uow) is None  # nothing left: Argilla not asked again


def test_a_withdrawal_refused_at_the_deadline_is_retried_by_the_next_pull(
    uow, tmp_path, monkeypatch, argilla_stack
) -> None:
    """Argilla refuses the deletes when the evaluation is stored past its deadline: the evaluation stands, and
    the next pull's withdrawal takes the unanswered records out (the answered one stays)."""
    import annotation.eval_gateway
    from annotation.api import AnnotationSyncError

    cfg, _ = _setup(uow, tmp_path, monkeypatch, argilla_stack, n=3)
    bob = annotator(argilla_stack, "bob")
    assert isinstance(evaluate_by_humans(cfg, uow, CHECKPOINT), Wait)
    records = _records(argilla_stack, cfg)
    answered = sorted(records)[0]
    respond(argilla_stack, bob, records[answered], "submitted", preference="a")
    _age(uow, 3)

    def refused(*_a, **_k):  # an Argilla outage at that moment cannot be brought about here
        raise AnnotationSyncError("Argilla: 503 Service Unavailable")

    with monkeypatch.context() as m:
        m.setattr(annotation.eval_gateway, "withdraw_comparisons", refused)
        evaluation = evaluate_by_humans(cfg, uow, CHECKPOINT)
    assert isinstance(evaluation, Evaluation) and evaluation.details["unanswered"] == 2
    assert len(_records(argilla_stack, cfg)) == 3  # still in the queue

    report = withdraw(cfg, uow)  # what every pull does first
    assert report is not None and report.evaluation_records == 2
    assert set(_records(argilla_stack, cfg)) == {answered}
    assert withdraw(cfg, uow) is None  # nothing left: Argilla not asked again
