"""`annotators exclude NAME` / `include NAME` with three bot annotators on blind overlap (min_submitted = 2), through
the CLI against the session's Argilla: the open round is decided again at once without the excluded
annotator, a closed round stays exactly as recorded, items left short go to another annotator's queue and are
answered there, `status` names the exclusion, export keeps the answers flagged, include restores; and while a
scheduler holds the lease the round work is queued for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from annotation.gateway import pull_labels, push_items
from annotation.records import flip
from annotation.simulated.bot import AnnotatorBot
from loop.cli.app import main
from loop.config import load_config
from loop.rounds.operator_commands import carry_out_pending
from loop.rounds.scheduler import LOCK
from loop.rounds.state import Services
from loop.rounds.steps import pull
from storage.db import UnitOfWork
from storage.locks import acquire, lease_fence, release
from storage.models import AnnotationItem, DecisionLabel, OperatorCommand, Round
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator_in, fresh_workspace, own_records, owner, respond, unique

pytestmark = pytest.mark.argilla


def _items(uow, round_id: int) -> dict[str, tuple]:
    """{item id: (status, decision, votes, decision method, confidence, links)} of a round."""
    with uow() as s:
        links = {}
        for item_id, label_id, counted in s.execute(
            select(DecisionLabel.item_id, DecisionLabel.label_id, DecisionLabel.counted)
        ):
            links.setdefault(item_id, set()).add((label_id, counted))
        return {
            i.id: (str(i.status), i.decision, dict(i.votes), i.decision_method, i.confidence, links.get(i.id))
            for i in s.scalars(select(AnnotationItem).where(AnnotationItem.round_id == round_id))
        }


def _answer(stack, who, dataset_name: str, items, choice: str, only: set[str] | None = None) -> set[str]:
    """`who` answers `choice` (our orientation) on every record of `items`' round in their queue."""
    done = set()
    for ext, rid in own_records(stack, who, dataset_name).items():
        if ext in items.swapped and (only is None or ext in only):
            respond(stack, who, rid, "submitted", preference=str(flip(choice, items.swapped[ext])))
            done.add(ext)
    return done


def _bots(stack, dataset_name: str, people: dict, best: set[str]) -> None:
    """Each annotator's bot answers their pending records (their own key, the annotator API): a careful one
    prefers the higher-reward response (our "a"), a careless one the other."""
    for who, careful in people.items():

        def judge(_prompt: str, shown_a: str, _shown_b: str, careful: bool = careful) -> str:
            return "a" if (shown_a in best) == careful else "b"

        with AnnotatorBot(stack.url, who.api_key, judge) as bot:
            for dataset_id in bot.dataset_ids(dataset_name):
                bot.run(dataset_id)


def test_exclude_redecides_the_open_round_refills_queues_and_include_restores(
    argilla_stack: ArgillaTarget, uow, engine, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    workspace = fresh_workspace(argilla_stack)
    careful, steady, careless = (
        annotator_in(argilla_stack, workspace, p) for p in ("careful", "steady", "rnd")
    )
    name = unique("ds-excl")
    config = tmp_path / "pvar-loop.toml"
    config.write_text(f'[argilla]\nworkspace = "{workspace}"\ndataset = "{name}"\nmin_submitted = 2\n')
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", argilla_stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", argilla_stack.api_key)
    monkeypatch.setenv("PVAR_LOOP_ACTOR", "alice")
    cli = ["--config", str(config)]

    from annotation.dataset import ensure_dataset

    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=2)
    closed = make_round_items(uow, 3, round_number=1, status=RoundStatus.COLLECTING, tag="closed ")
    push_items(uow, dataset, closed.round_id)
    bots = {careful: True, steady: True, careless: False}
    _bots(argilla_stack, name, bots, set(closed.best.values()))
    pull_labels(uow, dataset, closed.round_id)
    with uow() as s:  # trained on: its decisions are the record
        s.execute(update(Round).where(Round.id == closed.round_id).values(status=RoundStatus.DONE))
    closed_before = _items(uow, closed.round_id)
    assert any(v[0] == "undecided" for v in closed_before.values())  # the careless one split an item

    current = make_round_items(uow, 6, round_number=2, status=RoundStatus.COLLECTING, tag="open ")
    push_items(uow, dataset, current.round_id)
    held = {
        p.username: set(own_records(argilla_stack, p, name)) & set(current.item_ids)
        for p in (careful, steady, careless)
    }
    _bots(argilla_stack, name, bots, set(current.best.values()))
    pull_labels(uow, dataset, current.round_id)
    before = _items(uow, current.round_id)
    with_careless = held[careless.username]
    assert {before[i][0] for i in with_careless} == {"undecided"} and len(with_careless) == 4

    capsys.readouterr()
    assert main([*cli, "annotators", "exclude", careless.username, "--reason", "fast random"]) == 0
    out = capsys.readouterr().out
    assert f"excluded annotator {careless.username!r} since" in out and "round 2: decided again" in out, out
    after = _items(uow, current.round_id)
    # At once: the items the careless annotator shared have one counted answer left -> waiting; the others
    # keep their decision; the careless answers stay linked, not counted.
    assert {i for i, v in after.items() if v[0] == "pushed"} == with_careless
    assert all(after[i][:3] == before[i][:3] for i in set(current.item_ids) - with_careless)
    assert all(sorted(c for _, c in after[i][5]) == [False, True] for i in with_careless)
    assert _items(uow, closed.round_id) == closed_before  # a closed round stays exactly as it was
    # Short items went to the annotator who did not hold them: careful and steady now hold every item.
    for p in (careful, steady):
        assert set(current.item_ids) <= set(own_records(argilla_stack, p, name))
    assert (
        set(own_records(argilla_stack, careless, name)) & set(current.item_ids) == with_careless
    )  # nothing new
    _bots(argilla_stack, name, {careful: True, steady: True}, set(current.best.values()))  # the new ones
    pulled = pull_labels(uow, dataset, current.round_id)
    assert (pulled.decided, pulled.waiting, pulled.undecided) == (6, 0, 0)
    decided = _items(uow, current.round_id)
    assert {v[1] for v in decided.values()} == {"a"} and {v[3] for v in decided.values()} == {"majority"}
    assert {v[4] for v in decided.values()} == {1.0}  # majority: the share of the counted votes

    assert main([*cli, "status"]) == 0
    assert f"excluded:   {careless.username} since" in capsys.readouterr().out
    assert main([*cli, "status", "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["excluded_annotators"]
    assert (shown["annotator"], shown["by"], shown["reason"]) == (careless.username, "alice", "fast random")
    assert main([*cli, "annotators", "list", "--json"]) == 0
    listed = {r["username"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[careless.username]["excluded"]["reason"] == "fast random"
    assert all(r["excluded"] is None for who, r in listed.items() if who != careless.username)
    assert main([*cli, "annotators", "list"]) == 0
    [row] = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith(f"  {careless.username} ")
    ]
    assert "excluded" in row
    out_file = tmp_path / "prefs.jsonl"
    assert main([*cli, "export", str(out_file)]) == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    flagged = {
        (r["round"], who, excluded)
        for r in rows
        for who, excluded in zip(r["annotators"], r["excluded"], strict=True)
        if who == careless.username
    }
    assert {(2, True)} == {(rnd, ex) for rnd, _, ex in flagged}  # round 1's undecided are not exported

    assert main([*cli, "annotators", "exclude", careless.username]) == 2
    assert "error: annotator" in (err := capsys.readouterr().err) and "already excluded" in err
    assert main([*cli, "annotators", "exclude", "nobody-of-that-name"]) == 2
    assert "error: unknown annotator 'nobody-of-that-name'" in capsys.readouterr().err

    assert main([*cli, "annotators", "include", careless.username]) == 0
    restored = _items(uow, current.round_id)
    for i in with_careless:  # three answers again: a, a, b
        assert restored[i][:3] == ("decided", "a", {"a": 2, "b": 1}), restored[i]
    assert _items(uow, closed.round_id) == closed_before
    capsys.readouterr()
    assert main([*cli, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["excluded_annotators"] == []

    # While a scheduler holds the lease, the round work is queued for it and carried out at its tick.
    scheduler = "other-host:1:abc"
    acquire(engine, LOCK, scheduler, 3600, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    try:
        assert main([*cli, "annotators", "exclude", careless.username]) == 0
        assert "operator commands #1" in capsys.readouterr().out
        with uow() as s:
            assert [(c.command, c.round_number, c.state) for c in s.scalars(select(OperatorCommand))] == [
                ("redecide", 2, "pending")
            ]
        fenced = UnitOfWork(engine, fence=lease_fence(LOCK, scheduler))
        assert carry_out_pending(fenced, load_config(config), Services.default()) == 1
        with uow() as s:
            [cmd] = s.scalars(select(OperatorCommand))
            assert cmd.state == "done" and "round 2: decided again: 6 decided" in cmd.outcome, cmd.outcome
    finally:
        release(engine, LOCK, scheduler)


def _spy_deletes(monkeypatch) -> list[int]:
    """The status codes of the DELETE requests sent from now on (the real requests, counted)."""
    import httpx

    codes: list[int] = []
    send = httpx.Client.send

    def counting(self, request, **kw):
        response = send(self, request, **kw)
        if request.method == "DELETE":
            codes.append(response.status_code)
        return response

    monkeypatch.setattr(httpx.Client, "send", counting)
    return codes


def _pending_for(stack, who, dataset_id: str) -> set[str]:
    """External ids of the records `who` sees as pending (their queue in the shared dataset)."""
    import httpx

    body = {
        "filters": {
            "and": [
                {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]}
            ]
        }
    }
    r = httpx.post(
        f"{stack.url}/api/v1/me/datasets/{dataset_id}/records/search",
        params={"limit": 1000},
        json=body,
        headers={"X-Argilla-Api-Key": who.api_key},
        timeout=60,
    )
    r.raise_for_status()
    return {i["record"]["external_id"] for i in r.json()["items"]}


def test_shared_dataset_an_excluded_answer_puts_the_record_back_in_the_others_queue(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    from annotation.dataset import ensure_dataset

    workspace = fresh_workspace(argilla_stack)
    careless, careful = (annotator_in(argilla_stack, workspace, p) for p in ("quick", "slow"))
    name = unique("ds-excl-shared")
    config = tmp_path / "pvar-loop.toml"
    config.write_text(f'[argilla]\nworkspace = "{workspace}"\ndataset = "{name}"\n')
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", argilla_stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", argilla_stack.api_key)
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=1)
    items = make_round_items(uow, 2, status=RoundStatus.COLLECTING, tag="shared ")
    push_items(uow, dataset, items.round_id)
    first, second = items.item_ids
    _answer(argilla_stack, careless, name, items, "b", only={first})
    pull_labels(uow, dataset, items.round_id)
    assert _items(uow, items.round_id)[first][:2] == ("decided", "b")
    assert _pending_for(argilla_stack, careful, dataset.id) == {
        second
    }  # Argilla: completed, out of the queue

    assert main(["--config", str(config), "annotators", "exclude", careless.username]) == 0
    assert "1 records back in the annotators' queue" in capsys.readouterr().out
    assert _items(uow, items.round_id)[first][0] == "pushed"  # waiting again
    assert _pending_for(argilla_stack, careful, dataset.id) == {first, second}
    # The excluded annotator answers on: stored, and each collecting pull puts the record back for the others.
    _answer(argilla_stack, careless, name, items, "b", only={second})
    deletes = _spy_deletes(monkeypatch)
    pull(load_config(config), uow, items.round_id)
    assert _items(uow, items.round_id)[second][0] == "pushed"
    assert _pending_for(argilla_stack, careful, dataset.id) == {first, second}
    # The new answer only: the response released before is gone from Argilla and not asked for again.
    assert len(deletes) == 1 and deletes[0] != 404, deletes
    pull(load_config(config), uow, items.round_id)
    assert len(deletes) == 1, deletes  # nothing left to release, no request (was one 404 per pull each)
    _answer(argilla_stack, careful, name, items, "a", only={first, second})
    pull_labels(uow, dataset, items.round_id)
    for item_id in (first, second):
        status, decision, votes, *_ = _items(uow, items.round_id)[item_id]
        assert (status, decision, votes) == ("decided", "a", {"a": 1})  # the stored "b" kept, not counted
