"""Stored answers are append-only (issue 25): a late edit of a closed round, a discard after an answer, an answer
deleted and given again, an annotator removed and the username reused, a dataset deleted (as `argilla down
--purge` does) and its records re-created by `push`: every earlier version stays, keyed by the Argilla user id,
and a closed round's agreement, export and report keep reading the versions it was decided on. Real Argilla,
SQLite and PostgreSQL."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select, update

from annotation.annotators import create_annotator, find_annotator, remove_annotator
from annotation.dataset import ensure_dataset
from annotation.gateway import pull_labels, push_items
from annotation.records import flip
from loop.cli.app import main
from loop.cli.status_view import late_answer_json, round_agreements
from loop.export import export_row
from storage.db import UnitOfWork, make_engine
from storage.migrate import upgrade
from storage.models import AnnotationItem, Label, Round
from storage.repositories import queries
from storage.repositories.exports import exported_pairs
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import (
    annotator,
    annotator_in,
    fresh_workspace,
    own_records,
    owner,
    respond,
    unique,
)

pytestmark = pytest.mark.argilla


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def uow(request):
    engine = make_engine(request.getfixturevalue(f"{request.param}_url"))
    upgrade(engine)
    yield UnitOfWork(engine)
    engine.dispose()


def _versions(uow) -> list[tuple[str, str, str, str]]:
    """(item id, username, choice, Argilla response time) of every stored label row, in insertion order."""
    with uow() as s:
        return [
            (lb.item_id, lb.annotator, str(lb.choice), str(lb.submitted_at))
            for lb in s.scalars(select(Label).order_by(Label.id))
        ]


def _change(stack: ArgillaTarget, who, response: dict, status: str, **values) -> dict:
    """Edit a given response the way Argilla's Submitted view does (PUT /api/v1/responses/{id})."""
    r = httpx.put(
        f"{stack.url}/api/v1/responses/{response['id']}",
        json={"status": status, "values": {k: {"value": v} for k, v in values.items()}},
        headers={"X-Argilla-Api-Key": who.api_key},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _what_the_round_shows(uow) -> tuple:
    """Agreement (status), per-annotator choices (export) and the report's label choices."""
    from storage.repositories.labels import label_choices

    with uow() as s:
        agreement = round_agreements(queries.round_label_choices(s))
        exported = [(r["annotators"], r["choices"]) for r in map(export_row, exported_pairs(s))]
        report = sorted(label_choices(s))
    return agreement, exported, report


def test_a_late_edit_of_a_closed_round_is_kept_beside_what_it_was_decided_on(
    argilla_stack: ArgillaTarget, uow, tmp_path, monkeypatch, capsys
) -> None:
    items = make_round_items(uow, 3, status=RoundStatus.COLLECTING)
    ids, swapped = items.item_ids, items.swapped
    # Overlap 2 is blind: each annotator answers in a dataset of their own, in a workspace of this test's.
    workspace, name = fresh_workspace(argilla_stack, "ws-late"), unique("ds-late")
    ann, bob = annotator_in(argilla_stack, workspace, "ann"), annotator_in(argilla_stack, workspace, "bob")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=2)
    push_items(uow, dataset, items.round_id)
    mine = {who.username: own_records(argilla_stack, who, name) for who in (ann, bob)}
    given = {}
    for item_id, (first, second) in zip(ids, [("a", "a"), ("b", "b"), ("a", "b")], strict=True):
        choice = flip(first, swapped[item_id])
        respond(argilla_stack, ann, mine[ann.username][item_id], "submitted", preference=choice)
        given[item_id] = respond(
            argilla_stack,
            bob,
            mine[bob.username][item_id],
            "submitted",
            preference=flip(second, swapped[item_id]),
        )
    pull_labels(uow, dataset, items.round_id)
    before = _versions(uow)
    shown = _what_the_round_shows(uow)
    assert shown[0][("main", 1)]["pairwise"] == pytest.approx(2 / 3)
    with uow() as s:  # trained on: the round's collection has ended
        s.get(Round, items.round_id).status = RoundStatus.DONE

    # Bob reopens a decided record in Argilla's Submitted view and switches a to b.
    _change(argilla_stack, bob, given[ids[0]], "submitted", preference=flip("b", swapped[ids[0]]))
    late = pull_labels(uow, dataset, items.round_id)

    after = _versions(uow)
    assert after[: len(before)] == before  # nothing overwritten
    assert [v[:3] for v in after[len(before) :]] == [(ids[0], bob.username, "b")]
    assert after[-1][3] != before[1][3]  # with its own time (Argilla's updated_at)
    assert late.late_labels == 1
    assert _what_the_round_shows(uow) == shown  # agreement, export choices, report: as decided
    with uow() as s:
        assert str(s.get(AnnotationItem, ids[0]).decision) == "a"  # as trained

    # The late answer is shown: pull --json's list, status, and the export with --include-late.
    assert [
        (a["item"], a["annotator"], a["choice"], a["version"]) for a in map(late_answer_json, late.late)
    ] == [(ids[0], bob.username, "b", 2)]
    config = tmp_path / "pvar-loop.toml"
    config.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\n')
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", uow.engine.url.render_as_string(hide_password=False))
    cli = ["--config", str(config)]
    assert main([*cli, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(a["round"], a["annotator"], a["choice"]) for a in status["late_answers"]] == [
        (1, bob.username, "b")
    ]
    assert main([*cli, "status"]) == 0
    assert "late answers: 1 given or changed after their round stopped collecting (round 1: 1)" in (
        capsys.readouterr().out
    )
    out = tmp_path / "prefs.jsonl"
    assert main([*cli, "export", "--include-late", str(out)]) == 0
    rows = {r["prompt"][0]["content"]: r for r in map(json.loads, out.read_text().splitlines())}
    row = rows[items.prompts[ids[0]]]
    assert (row["annotators"], row["choices"]) == ([ann.username, bob.username], ["chosen", "chosen"])
    assert (row["late_annotators"], row["late_choices"]) == ([bob.username], ["rejected"])


def test_open_round_follows_the_latest_version_and_keeps_every_earlier_one(
    argilla_stack: ArgillaTarget, uow
) -> None:
    items = make_round_items(uow, 2, status=RoundStatus.COLLECTING)
    first, second = items.item_ids
    swapped = items.swapped
    dataset = ensure_dataset(
        owner(argilla_stack), unique("ds-open"), argilla_stack.workspace, min_submitted=1
    )
    push_items(uow, dataset, items.round_id)
    with uow() as s:
        records = {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}
    ann, bob = annotator(argilla_stack, "ann"), annotator(argilla_stack, "bob")

    def decision(item_id):
        with uow() as s:
            item = s.get(AnnotationItem, item_id)
            return str(item.status), item.decision and str(item.decision)

    # A discard after an answer: a new version; the open round follows it.
    answered = respond(argilla_stack, ann, records[first], "submitted", preference=flip("a", swapped[first]))
    pull_labels(uow, dataset, items.round_id)
    assert decision(first) == ("decided", "a")
    _change(argilla_stack, ann, answered, "discarded")
    pull_labels(uow, dataset, items.round_id)
    assert [v[2] for v in _versions(uow) if v[0] == first] == ["a", "discard"]
    assert decision(first) == ("undecided", None)

    # An answer deleted in Argilla, then given again: both kept.
    given = respond(argilla_stack, bob, records[second], "submitted", preference=flip("b", swapped[second]))
    pull_labels(uow, dataset, items.round_id)
    r = httpx.delete(
        f"{argilla_stack.url}/api/v1/responses/{given['id']}",
        headers={"X-Argilla-Api-Key": bob.api_key},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    pull_labels(uow, dataset, items.round_id)
    assert [v[2] for v in _versions(uow) if v[0] == second] == ["b"]
    respond(argilla_stack, bob, records[second], "submitted", preference=flip("a", swapped[second]))
    pull_labels(uow, dataset, items.round_id)
    assert [v[2] for v in _versions(uow) if v[0] == second] == ["b", "a"]
    assert decision(second) == ("decided", "a")

    # `annotators remove`: Argilla deletes bob and his responses; his stored answers stay and still count.
    with httpx.Client(base_url=argilla_stack.url, headers=argilla_stack.headers, timeout=60) as http:
        member = find_annotator(http, bob.username, argilla_stack.workspace)
        assert remove_annotator(http, member, argilla_stack.workspace)
        pull_labels(uow, dataset, items.round_id)
        assert [v[2] for v in _versions(uow) if v[0] == second] == ["b", "a"]
        assert decision(second) == ("decided", "a")
        # The username given to somebody else: their answer is theirs, not a new version of bob's.
        other = create_annotator(http, bob.username, argilla_stack.workspace)
    respond(argilla_stack, other, records[second], "submitted", preference=flip("b", swapped[second]))
    pull_labels(uow, dataset, items.round_id)
    with uow() as s:
        rows = [
            (lb.annotator_id, lb.version, str(lb.choice))
            for lb in s.scalars(select(Label))
            if lb.item_id == second
        ]
    assert (
        sorted(rows) == sorted([(member.user_id, 1, "b"), (member.user_id, 2, "a"), (rows[-1][0], 1, "b")])
        and rows[-1][0] != member.user_id
    )
    with uow() as s:
        assert s.get(AnnotationItem, second).votes == {"a": 1, "b": 1}  # two people, one answer each


def test_a_deleted_dataset_and_its_recreated_records_keep_the_stored_answers(
    argilla_stack: ArgillaTarget, uow
) -> None:
    items = make_round_items(uow, 2, status=RoundStatus.COLLECTING)
    swapped = items.swapped
    name = unique("ds-purge")
    client = owner(argilla_stack)
    dataset = ensure_dataset(client, name, argilla_stack.workspace, min_submitted=1)
    push_items(uow, dataset, items.round_id)
    with uow() as s:
        records = {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}
    ann = annotator(argilla_stack, "ann")
    for item_id in items.item_ids:
        respond(argilla_stack, ann, records[item_id], "submitted", preference=flip("a", swapped[item_id]))
    pull_labels(uow, dataset, items.round_id)
    # As migration 0010 leaves answers stored before it: no Argilla user id. The next pull gives them the id
    # of the user answering under that username, and stores nothing new for an unchanged answer.
    with uow() as s:
        s.execute(update(Label).values(annotator_id=None))
    again = pull_labels(uow, dataset, items.round_id)
    assert (again.new_labels, again.updated_labels, again.unchanged_labels) == (0, 0, 2)
    with uow() as s:
        assert {lb.annotator_id for lb in s.scalars(select(Label))} == {ann.user_id}
    before = _versions(uow)

    # What `argilla down --purge` does to the answers: the dataset, its records and responses are gone.
    r = httpx.delete(
        f"{argilla_stack.url}/api/v1/datasets/{dataset.id}", headers=argilla_stack.headers, timeout=60
    )
    assert r.status_code == 200, r.text
    fresh = ensure_dataset(client, name, argilla_stack.workspace, min_submitted=1)
    gone = pull_labels(uow, fresh, items.round_id)
    assert len(gone.skipped) == 2 and _versions(uow) == before

    # `push` re-creates the records; answered again, differently: new versions beside the old ones.
    assert push_items(uow, fresh, items.round_id).recreated == 2
    with uow() as s:
        records = {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}
    for item_id in items.item_ids:
        respond(argilla_stack, ann, records[item_id], "submitted", preference=flip("b", swapped[item_id]))
    again = pull_labels(uow, fresh, items.round_id)
    assert (again.new_labels, again.updated_labels) == (0, 2)
    after = _versions(uow)
    assert after[:2] == before and [v[2] for v in after[2:]] == ["b", "b"]
    with uow() as s:
        assert sorted((lb.annotator_id, lb.version) for lb in s.scalars(select(Label))) == sorted(
            [(ann.user_id, 1)] * 2 + [(ann.user_id, 2)] * 2
        )
