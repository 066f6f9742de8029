"""Pulling answers from the real Argilla server: labels and aggregates exact, re-pull a no-op, malformed
answers reported and skipped, workspaces isolated."""

from __future__ import annotations

import argilla as rg
import httpx
import pytest
from sqlalchemy import select

from annotation.dataset import ensure_dataset, handle_for
from annotation.gateway import pull_labels, push_items
from annotation.records import flip
from storage.models import AnnotationItem, Label
from storage.repositories.items import decided_items
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


def _labels(uow) -> dict[tuple[str, str], tuple[str, str | None]]:
    with uow() as s:
        return {(lb.item_id, lb.annotator): (lb.choice, lb.rationale) for lb in s.scalars(select(Label))}


def _items(uow) -> dict[str, tuple[str, str | None, dict]]:
    with uow() as s:
        return {i.id: (i.status, i.decision, i.votes) for i in s.scalars(select(AnnotationItem))}


def _record_ids(uow) -> dict[str, str]:
    with uow() as s:
        return {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}


# Answers per item in OUR orientation (a = the higher-reward response); None = no answer yet.
PLAN = [
    ("a", "a", "b"),  # majority a, one dissent
    ("b", "tie", "b"),  # majority b
    ("a", "b", "tie"),  # three-way split: undecided
    ("tie", "tie", "discard"),  # tie wins; the discard does not vote
    ("discard", "a", None),  # only two answers of the three required: waiting
]
EXPECTED = [
    ("decided", "a", {"a": 2, "b": 1}),
    ("decided", "b", {"b": 2, "tie": 1}),
    ("undecided", None, {"a": 1, "b": 1, "tie": 1}),
    ("decided", "tie", {"tie": 2, "discard": 1}),
    ("pushed", None, {"a": 1, "discard": 1}),
]


def test_three_annotators_conflicts_tie_and_discard(argilla_stack: ArgillaTarget, uow) -> None:
    items = make_round_items(uow, len(PLAN))
    ids = items.item_ids
    assert len({items.swapped[i] for i in ids}) == 2  # both orientations are exercised
    # Overlap 3: every item goes to each of the workspace's three annotators, in a dataset of their own.
    workspace, name = fresh_workspace(argilla_stack), unique("ds-three")
    people = [annotator_in(argilla_stack, workspace, f"ann{k}") for k in range(3)]
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=3)
    push_items(uow, dataset, items.round_id)
    own = {who.username: own_records(argilla_stack, who, name) for who in people}

    expected_labels = {}
    for item_id, answers in zip(ids, PLAN, strict=True):
        for who, ours in zip(people, answers, strict=True):
            if ours is None:
                continue
            records = own[who.username]
            rationale = f"{who.username} thinks {ours}"
            if ours == "discard":
                respond(argilla_stack, who, records[item_id], "discarded")
                expected_labels[(item_id, who.username)] = ("discard", None)
            else:
                shown = flip(ours, items.swapped[item_id])  # what the annotator clicks in the UI
                respond(
                    argilla_stack, who, records[item_id], "submitted", preference=shown, rationale=rationale
                )
                expected_labels[(item_id, who.username)] = (ours, rationale)

    report = pull_labels(uow, dataset, items.round_id)
    assert report.skipped == []
    assert (report.new_labels, report.updated_labels, report.drafts) == (14, 0, 0)
    assert (report.decided, report.undecided, report.waiting) == (3, 1, 1)
    assert report.ties == 1  # of the decided: `pull` shows decided a/b and ties apart
    assert report.items_changed == 5
    assert _labels(uow) == expected_labels
    assert _items(uow) == {i: e for i, e in zip(ids, EXPECTED, strict=True)}
    # Agreement over items with >= 2 votes: (1/3 + 1/3 + 0 + 1) / 4 pairwise.
    assert report.agreement is not None and report.agreement.items == 4
    assert report.agreement.pairwise == pytest.approx(5 / 12)

    before = (_labels(uow), _items(uow))
    again = pull_labels(uow, dataset, items.round_id)
    assert not again.changed and again.unchanged_labels == 14 and again.skipped == []
    assert (_labels(uow), _items(uow)) == before

    # Only decided a/b items become training pairs, the annotators' choice first.
    with uow() as s:
        pairs = decided_items(s, [items.round_id])
    assert [(p.item_id, p.chosen, p.rejected) for p in pairs] == sorted(
        [(ids[0], items.best[ids[0]], items.worst[ids[0]]), (ids[1], items.worst[ids[1]], items.best[ids[1]])]
    )
    assert pairs[0].prompt == items.prompts[pairs[0].item_id]

    # The third annotator answers the last record; it gets decided, nothing else moves.
    respond(
        argilla_stack,
        people[2],
        own[people[2].username][ids[4]],
        "submitted",
        preference=flip("a", items.swapped[ids[4]]),
    )
    late = pull_labels(uow, dataset, items.round_id)
    assert (late.new_labels, late.updated_labels, late.items_changed) == (1, 0, 1)
    assert _items(uow)[ids[4]] == ("decided", "a", {"a": 2, "discard": 1})


def test_annotator_cannot_see_another_workspace(argilla_stack: ArgillaTarget) -> None:
    client = owner(argilla_stack)
    other = unique("ws-other")
    created = client.http_client.post("/api/v1/workspaces", json={"name": other})
    assert created.status_code == 201, created.text
    hidden = ensure_dataset(client, unique("ds-hidden"), other)
    mine = ensure_dataset(client, unique("ds-mine"), argilla_stack.workspace)
    who = annotator(argilla_stack, "iso")
    with httpx.Client(
        base_url=f"{argilla_stack.url}/api/v1", headers={"X-Argilla-Api-Key": who.api_key}
    ) as http:
        listing = http.get("/me/datasets", params={"workspace_id": created.json()["id"]})
        assert listing.status_code == 403, listing.text
        assert http.get(f"/datasets/{hidden.id}").status_code == 403
        assert http.post(f"/me/datasets/{hidden.id}/records/search", json={}).status_code == 403
        visible = {d["id"] for d in http.get("/me/datasets").json()["items"]}
        assert mine.id in visible and hidden.id not in visible
        assert [w["name"] for w in http.get("/me/workspaces").json()["items"]] == [argilla_stack.workspace]


def test_malformed_answers_are_reported_and_skipped(argilla_stack: ArgillaTarget, uow) -> None:
    """A same-shaped dataset configured by hand with an extra label and an optional preference: the answers
    our schema cannot use, a deleted record and a foreign record are reported; the good answer is stored."""
    client = owner(argilla_stack)
    name = unique("ds-odd")
    settings = rg.Settings(
        fields=[rg.TextField(name=f, client=client) for f in ("prompt", "response_a", "response_b")],
        questions=[
            rg.LabelQuestion(
                name="preference", labels=["a", "b", "tie", "unsure"], required=False, client=client
            ),
            rg.TextQuestion(name="rationale", required=True, client=client),  # Argilla needs one required
        ],
        metadata=[
            rg.IntegerMetadataProperty(name="round", client=client),
            rg.TermsMetadataProperty(name="strategy", client=client),
            *(rg.FloatMetadataProperty(name=n, client=client) for n in ("pvar", "reward_a", "reward_b")),
            rg.TermsMetadataProperty(name="swapped", client=client),
        ],
    )
    created = rg.Dataset(
        name=name, workspace=argilla_stack.workspace, settings=settings, client=client
    ).create()
    dataset = handle_for(client, str(created.id))
    items = make_round_items(uow, 5)
    ids = items.item_ids
    push_items(uow, dataset, items.round_id)
    records = _record_ids(uow)
    who = annotator(argilla_stack, "odd")

    respond(argilla_stack, who, records[ids[0]], "submitted", preference="unsure", rationale="hm")
    respond(argilla_stack, who, records[ids[1]], "submitted", rationale="no preference given")
    respond(argilla_stack, who, records[ids[2]], "draft", rationale="still thinking")
    respond(
        argilla_stack,
        who,
        records[ids[3]],
        "submitted",
        preference=flip("b", items.swapped[ids[3]]),
        rationale="ok",
    )
    deleted = client.http_client.delete(f"/api/v1/records/{records[ids[4]]}")
    assert deleted.status_code == 200, deleted.text
    foreign = client.http_client.put(
        f"/api/v1/datasets/{dataset.id}/records/bulk",
        json={
            "items": [
                {"external_id": "not-ours", "fields": {"prompt": "p", "response_a": "x", "response_b": "y"}}
            ]
        },
    )
    assert foreign.status_code == 200, foreign.text
    respond(argilla_stack, who, foreign.json()["items"][0]["id"], "submitted", preference="a", rationale="?")

    report = pull_labels(uow, dataset, items.round_id)
    assert (report.records, report.responses, report.drafts, report.new_labels) == (5, 5, 1, 1)
    assert sorted((s.record, s.annotator, s.reason) for s in report.skipped) == sorted(
        [
            (ids[0], who.username, "unknown 'preference' label 'unsure' (expected one of a, b, tie)"),
            (ids[1], who.username, "submitted without a 'preference' answer"),
            (ids[4], None, "record deleted from Argilla (labels kept)"),
            ("not-ours", None, "record unknown to our database"),
        ]
    )
    assert _labels(uow) == {(ids[3], who.username): ("b", "ok")}
    assert _items(uow)[ids[3]] == ("decided", "b", {"b": 1})
    assert {_items(uow)[i][0] for i in ids if i != ids[3]} == {"pushed"}

    again = pull_labels(uow, dataset, items.round_id)
    assert not again.changed and len(again.skipped) == 4
