"""A cancelled round leaves the annotators' queue (issue 11, point 5): its waiting records are deleted from
Argilla (at once, or by the next push/pull when Argilla was unreachable at the cancel), answers given on them
are kept and marked by their round, never trained on or exported unless asked, and a prompt that a later round
selects again is never waiting in the queue twice. Answers come from an annotator's API key."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from annotation.records import flip
from loop.cli.app import main
from loop.rounds.pairing import create_items
from storage.models import AnnotationItem, Label, Round
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.fixtures.database import free_port
from tests.support.annotation_setup import CHECKPOINT, REWARD_MODEL, make_round_items
from tests.support.argilla_helpers import annotator, external_ids, respond, unique

pytestmark = pytest.mark.argilla


def _project(tmp_path: Path, monkeypatch, sqlite_url: str, stack: ArgillaTarget) -> list[str]:
    config = tmp_path / "pvar-loop.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n[argilla]\nworkspace = "{stack.workspace}"\n'
        f'dataset = "{unique("ds-cancel")}"\nmin_submitted = 1\n'
    )
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", stack.api_key)
    return ["--config", str(config)]


def _push(cli: list[str], number: int, capsys) -> tuple[str, str]:
    assert main([*cli, "push", "--round", str(number)]) == 0
    out = capsys.readouterr().out
    return re.search(r"/dataset/([0-9a-f-]+)/annotation-mode", out).group(1), out


def _records(uow) -> dict[str, str | None]:
    with uow() as s:
        return {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}


def _labels(uow) -> dict[str, str]:
    with uow() as s:
        return {lb.item_id: lb.choice for lb in s.scalars(select(Label))}


def _export(cli: list[str], out: Path, *flags: str) -> list[dict]:
    assert main([*cli, "export", *flags, str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_cancel_withdraws_waiting_records_and_keeps_answers_out_of_training(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path: Path, monkeypatch, capsys
) -> None:
    items = make_round_items(uow, 4, status=RoundStatus.COLLECTING)
    cli = _project(tmp_path, monkeypatch, sqlite_url, argilla_stack)
    dataset_id, _ = _push(cli, 1, capsys)
    records = _records(uow)
    ann = annotator(argilla_stack)
    first, second = items.item_ids[:2]
    respond(argilla_stack, ann, records[first], "submitted", preference="a")
    assert main([*cli, "pull"]) == 0
    capsys.readouterr()
    respond(argilla_stack, ann, records[second], "submitted", preference="b")  # not pulled yet

    assert main([*cli, "round", "cancel", "1"]) == 0
    out = capsys.readouterr().out
    assert "round 1 cancelled" in out
    assert "withdrew 3 waiting records from Argilla (1 answers on them stored first" in out, out
    assert external_ids(argilla_stack, dataset_id) == [first]  # only the settled record is left
    sw = items.swapped  # labels are stored in our a/b: the answers shown, un-swapped
    assert _labels(uow) == {
        first: flip("a", sw[first]),
        second: flip("b", sw[second]),
    }  # every answer is kept
    with uow() as s:
        assert s.get(AnnotationItem, second).status == "pushed"  # stored, not decided: the round is closed
        assert s.get(AnnotationItem, second).argilla_record_id is None

    assert _export(cli, tmp_path / "out.jsonl") == []  # the cancelled round's decision is not exported
    assert "0 preference pairs" in capsys.readouterr().out
    both = _export(cli, tmp_path / "all.jsonl", "--include-cancelled")
    assert [r["round_id"] for r in both] == [items.round_id]
    assert main([*cli, "train", "--round", "1"]) == 2
    err = capsys.readouterr().err
    assert "round 1 is cancelled" in err and "never trained on" in err and "Traceback" not in err
    assert main([*cli, "push", "--round", "1"]) == 2  # nothing of it goes back into the queue
    assert "is cancelled" in capsys.readouterr().err
    assert external_ids(argilla_stack, dataset_id) == [first]


def test_a_round_closed_at_its_deadline_withdraws_its_unanswered_records(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path: Path, monkeypatch, capsys
) -> None:
    items = make_round_items(uow, 3, status=RoundStatus.COLLECTING)
    cli = _project(tmp_path, monkeypatch, sqlite_url, argilla_stack)
    dataset_id, _ = _push(cli, 1, capsys)
    records = _records(uow)
    first = items.item_ids[0]
    respond(argilla_stack, annotator(argilla_stack), records[first], "submitted", preference="a")
    with uow() as s:  # the deadline has passed with one decided label: enough ([scheduler] min_decided = 1)
        s.get(Round, items.round_id).deadline_at = datetime.now(UTC) - timedelta(minutes=1)

    assert main([*cli, "round", "advance", "1"]) == 0
    with uow() as s:
        assert s.get(Round, items.round_id).status == "training"
    assert external_ids(argilla_stack, dataset_id) == [first]  # nobody is asked for answers nobody uses
    assert _records(uow) == {first: records[first]} | {i: None for i in items.item_ids[1:]}
    assert _labels(uow) == {first: flip("a", items.swapped[first])}


def test_cancel_while_argilla_is_down_is_finished_by_the_next_pull(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path: Path, monkeypatch, capsys
) -> None:
    items = make_round_items(uow, 3, status=RoundStatus.COLLECTING)
    cli = _project(tmp_path, monkeypatch, sqlite_url, argilla_stack)
    dataset_id, _ = _push(cli, 1, capsys)
    records = _records(uow)

    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    assert main([*cli, "round", "cancel", "1"]) == 0
    out = capsys.readouterr().out
    assert "round 1 cancelled" in out and "records stay in Argilla's queue for now" in out, out
    with uow() as s:
        assert s.get(Round, items.round_id).status == "cancelled"
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", argilla_stack.url)

    ann = annotator(argilla_stack)  # an answer that arrives for the cancelled round
    respond(argilla_stack, ann, records[items.item_ids[0]], "submitted", preference="a")
    assert main([*cli, "pull", "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert (pulled["withdrawn"], pulled["cancelled_labels"]) == (3, 1)
    assert external_ids(argilla_stack, dataset_id) == []
    assert _labels(uow) == {items.item_ids[0]: flip("a", items.swapped[items.item_ids[0]])}
    assert _export(cli, tmp_path / "out.jsonl") == []
    assert main([*cli, "pull"]) == 0  # nothing left to withdraw: Argilla holds none of its records
    assert "withdrew" not in capsys.readouterr().out


def test_reselected_prompts_are_never_waiting_twice(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path: Path, monkeypatch, capsys
) -> None:
    items = make_round_items(uow, 3, status=RoundStatus.COLLECTING)
    cli = _project(tmp_path, monkeypatch, sqlite_url, argilla_stack)
    dataset_id, _ = _push(cli, 1, capsys)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", f"http://127.0.0.1:{free_port()}")
    assert main([*cli, "round", "cancel", "1"]) == 0  # Argilla unreachable: the records stay for now
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", argilla_stack.url)
    capsys.readouterr()

    with uow() as s:  # round 2 selects the same prompts again (the cancel freed them)
        prompt_ids = list(
            s.scalars(select(AnnotationItem.prompt_id).where(AnnotationItem.round_id == items.round_id))
        )
        rnd = Round(
            number=2, budget=3, strategy="pvar", seed=1, policy_in=CHECKPOINT, status=RoundStatus.COLLECTING
        )
        s.add(rnd)
        s.flush()
        create_items(
            s,
            round_id=rnd.id,
            prompt_ids=prompt_ids,
            checkpoint_id=CHECKPOINT,
            reward_model=REWARD_MODEL,
            seed=1,
        )
        round2 = rnd.id
    _, out = _push(cli, 2, capsys)
    assert "withdrew 3 waiting records of cancelled rounds from Argilla first" in out, out
    with uow() as s:
        round2_items = set(s.scalars(select(AnnotationItem.id).where(AnnotationItem.round_id == round2)))
        assert s.scalar(select(func.count(Label.id))) == 0
    assert sorted(external_ids(argilla_stack, dataset_id)) == sorted(round2_items)
    r = httpx.get(
        f"{argilla_stack.url}/api/v1/datasets/{dataset_id}/records",
        params={"limit": 1000},
        headers=argilla_stack.headers,
        timeout=60,
    )
    prompts = [rec["fields"]["prompt"] for rec in r.json()["items"]]
    assert sorted(prompts) == sorted(items.prompts.values())  # each prompt once
