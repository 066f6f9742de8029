"""What annotators work with, against the real Argilla server: the dataset's layout (side by side, or the
Markdown layout of older datasets), progress of one round in the shared dataset, and drafts."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import func, select

from annotation.dataset import MARKDOWN, SIDE_BY_SIDE, ensure_dataset, open_dataset
from annotation.gateway import pull_labels, push_items
from annotation.progress import drafts_by_annotator, round_progress
from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import RewardJudge
from storage.models import AnnotationItem, Label
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator, owner, respond, unique

pytestmark = pytest.mark.argilla


def _old_settings(client):
    """The settings pvar-loop created before the side-by-side layout: three Markdown TextFields, round and
    strategy hidden, no priority."""
    import argilla as rg

    hidden = {"visible_for_annotators": False, "client": client}
    return rg.Settings(
        guidelines="old guidelines",
        fields=[
            rg.TextField(name=n, title=n, use_markdown=True, client=client)
            for n in ("prompt", "response_a", "response_b")
        ],
        questions=[
            rg.LabelQuestion(name="preference", labels=["a", "b", "tie"], client=client),
            rg.TextQuestion(name="rationale", required=False, client=client),
        ],
        metadata=[
            rg.IntegerMetadataProperty(name="round", title="Round", **hidden),
            rg.TermsMetadataProperty(name="strategy", title="Selection strategy", **hidden),
        ],
        distribution=rg.TaskDistribution(min_submitted=1),
    )


def _record(stack: ArgillaTarget, record_id: str) -> dict:
    r = httpx.get(f"{stack.url}/api/v1/records/{record_id}", headers=stack.headers, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_dataset_with_the_old_schema_keeps_its_layout_and_gets_the_new_metadata(
    argilla_stack: ArgillaTarget, uow, caplog
) -> None:
    """Handled, not refused: fields cannot change once published, so an old dataset keeps its stacked Markdown
    fields (records are pushed in that shape, with a warning), and gains what annotators filter and sort on."""
    import argilla as rg

    client = owner(argilla_stack)
    name = unique("ds-old")
    rg.Dataset(
        name=name, workspace=argilla_stack.workspace, settings=_old_settings(client), client=client
    ).create()
    items = make_round_items(uow, 3)

    caplog.set_level(logging.WARNING, logger="annotation.dataset")
    dataset = ensure_dataset(client, name, argilla_stack.workspace)  # [argilla] markdown = false
    assert (dataset.created, dataset.layout) == (False, MARKDOWN)
    assert "keeps its layout" in caplog.text and "[argilla] dataset" in caplog.text
    meta = dataset.http.get(f"/api/v1/me/datasets/{dataset.id}/metadata-properties").json()["items"]
    assert {m["name"]: m["visible_for_annotators"] for m in meta} == {
        "round": True,
        "strategy": False,
        "priority": True,
        "source_id": False,
    }
    assert open_dataset(client, name, argilla_stack.workspace).layout == MARKDOWN
    assert ensure_dataset(client, name, argilla_stack.workspace).layout == MARKDOWN  # idempotent

    push_items(uow, dataset, items.round_id, order=list(reversed(items.item_ids)))
    first = items.item_ids[-1]
    with uow() as s:
        record_id = s.get(AnnotationItem, first).argilla_record_id
    record = _record(argilla_stack, record_id)
    assert set(record["fields"]) == {"prompt", "response_a", "response_b"}
    assert record["metadata"] == {"round": 1, "strategy": "pvar", "priority": 1}


def test_markdown_option_creates_the_stacked_markdown_layout(argilla_stack: ArgillaTarget) -> None:
    client = owner(argilla_stack)
    plain = ensure_dataset(client, unique("ds-plain"), argilla_stack.workspace)
    md = ensure_dataset(client, unique("ds-md"), argilla_stack.workspace, markdown=True)
    assert (plain.layout, md.layout) == (SIDE_BY_SIDE, MARKDOWN)
    fields = {
        f["name"]: f["settings"] for f in md.http.get(f"/api/v1/datasets/{md.id}/fields").json()["items"]
    }
    assert list(fields) == ["prompt", "response_a", "response_b"]
    assert all(f["use_markdown"] for f in fields.values())


def test_round_progress_counts_only_the_current_round(argilla_stack: ArgillaTarget, uow) -> None:
    """All rounds share one dataset: Argilla's own progress mixes them, round_progress does not."""
    old = make_round_items(uow, 2, round_number=1, tag="old ")
    new = make_round_items(uow, 3, round_number=2, tag="new ")
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-progress"), argilla_stack.workspace)
    push_items(uow, dataset, old.round_id)
    push_items(uow, dataset, new.round_id)
    who = annotator(argilla_stack, "prog")
    with uow() as s:
        ids = {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}
    for item_id in old.item_ids:  # the old round is done
        respond(argilla_stack, who, ids[item_id], "submitted", preference="a")
    respond(argilla_stack, who, ids[new.item_ids[0]], "submitted", preference="b")

    mixed = dataset.http.get(f"/api/v1/datasets/{dataset.id}/progress").json()
    assert (mixed["total"], mixed["completed"]) == (5, 3)  # 60 %, though round 2 is one third done
    now = round_progress(dataset, 2)
    assert (now.total, now.completed, now.pending) == (3, 1, 2)
    assert round(now.percent, 1) == 33.3
    before = round_progress(dataset, 1)
    assert (before.total, before.completed, before.pending) == (2, 2, 0)


def test_drafts_are_reported_not_stored_and_the_bot_leaves_none(argilla_stack: ArgillaTarget, uow) -> None:
    items = make_round_items(uow, 4)
    dataset = ensure_dataset(
        owner(argilla_stack), unique("ds-drafts"), argilla_stack.workspace, min_submitted=1
    )
    push_items(uow, dataset, items.round_id)
    with uow() as s:
        ids = {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}
    human = annotator(argilla_stack, "human")
    bot_user = annotator(argilla_stack, "botty")
    # Real drafts, saved through the API the UI's "Save as draft" uses: two by a person, one by the bot's
    # account (an interrupted session); a draft leaves that annotator's Pending queue.
    for item_id in items.item_ids[:2]:
        respond(argilla_stack, human, ids[item_id], "draft", preference="a")
    respond(argilla_stack, bot_user, ids[items.item_ids[3]], "draft", preference="tie")

    pulled = pull_labels(uow, dataset, items.round_id)
    assert (pulled.drafts, pulled.drafts_by, pulled.new_labels) == (
        3,
        {human.username: 2, bot_user.username: 1},
        0,
    )
    with uow() as s:
        assert s.scalar(select(func.count(Label.id))) == 0  # a draft is not an answer
    # Argilla's own count, what `status` lists (issue 26)
    assert drafts_by_annotator(dataset) == {human.username: 2, bot_user.username: 1}

    with AnnotatorBot(argilla_stack.url, bot_user.api_key, RewardJudge(lambda _p, r: len(r), seed=0)) as bot:
        assert len(bot.pending(dataset.id)) == 4  # its draft is in its queue
        report = bot.run(dataset.id)
    assert report.submitted == 4 and report.errors == []
    after = pull_labels(uow, dataset, items.round_id)
    assert (after.drafts, after.drafts_by, after.new_labels) == (2, {human.username: 2}, 4)
    assert drafts_by_annotator(dataset) == {human.username: 2}
    statuses = [
        r["status"]
        for item_id in items.item_ids
        for r in httpx.get(
            f"{argilla_stack.url}/api/v1/records/{ids[item_id]}",
            params={"include": "responses"},
            headers=argilla_stack.headers,
        ).json()["responses"]
        if r["user_id"] == _user_id(argilla_stack, bot_user.username)
    ]
    assert statuses == ["submitted"] * 4  # the bot's draft was submitted over, none left


def _user_id(stack: ArgillaTarget, username: str) -> str:
    users = httpx.get(f"{stack.url}/api/v1/users", headers=stack.headers, timeout=60).json()["items"]
    return next(u["id"] for u in users if u["username"] == username)
