"""Dataset creation and pushing against the real Argilla server: idempotent, interruption-safe, exact."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, update

from annotation.api import AnnotationSyncError
from annotation.dataset import LABELS, METADATA, RULES, VISIBLE_METADATA, ensure_dataset, open_dataset
from annotation.gateway import PushReport, push_items
from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import LookupJudge
from annotation.stack.local_stack import start_server, stop_server
from loop.rounds.priority import priority_order
from storage.models import AnnotationItem
from storage.repositories.items import round_item_scores
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import REWARD_MODEL, make_round_items
from tests.support.argilla_helpers import FAST, annotator, external_ids, owner, record_count, unique

pytestmark = pytest.mark.argilla


def _item_states(uow) -> dict[str, tuple[str, str | None]]:
    with uow() as s:
        return {i.id: (i.status, i.argilla_record_id) for i in s.scalars(select(AnnotationItem))}


def test_dataset_creation_is_idempotent(argilla_stack: ArgillaTarget) -> None:
    client = owner(argilla_stack)
    name = unique("ds-idem")
    assert open_dataset(client, name, argilla_stack.workspace) is None
    first = ensure_dataset(client, name, argilla_stack.workspace, min_submitted=2)
    second = ensure_dataset(client, name, argilla_stack.workspace, min_submitted=2)
    assert first.created and not second.created
    assert second.id == first.id and second.min_submitted == 2

    http = client.http_client
    same_name = http.get("/api/v1/me/datasets", params={"name": name}).json()["items"]
    assert [d["id"] for d in same_name] == [first.id]
    dataset = http.get(f"/api/v1/datasets/{first.id}").json()
    assert dataset["status"] == "ready" and dataset["distribution"]["min_submitted"] == 2
    assert "Choose **Tie** only when" in dataset["guidelines"]
    assert "from **Pending** to **Draft**" in dataset["guidelines"]  # issue 26: what to do after a draft
    fields = {f["name"]: f for f in http.get(f"/api/v1/datasets/{first.id}/fields").json()["items"]}
    assert list(fields) == ["prompt", "responses"]  # A and B side by side in one custom field
    assert fields["prompt"]["settings"] == {"type": "text", "use_markdown": False}
    assert fields["responses"]["settings"]["type"] == "custom"
    questions = {q["name"]: q for q in http.get(f"/api/v1/datasets/{first.id}/questions").json()["items"]}
    pref = questions["preference"]
    assert pref["required"] and not questions["rationale"]["required"]
    assert pref["description"] == RULES and "Choose Tie only when" in RULES
    # Above A and B: what to do when a saved draft leaves the queue empty.
    assert "You have no pending records" in fields["responses"]["settings"]["template"]
    assert "from Pending to Draft" in RULES
    assert {o["value"]: o["text"] for o in pref["settings"]["options"]} == LABELS
    meta = http.get(f"/api/v1/me/datasets/{first.id}/metadata-properties").json()["items"]
    assert {m["name"] for m in meta} == set(METADATA)
    assert {m["name"] for m in meta if m["visible_for_annotators"]} == set(VISIBLE_METADATA)


def test_pushing_a_round_twice_leaves_one_record_per_item(argilla_stack: ArgillaTarget, uow) -> None:
    items = make_round_items(uow, 7)
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-push2"), argilla_stack.workspace)

    first = push_items(uow, dataset, items.round_id, batch_size=3)
    assert (first.items, first.pushed, first.repushed, first.batches) == (7, 7, 0, 3)
    states = _item_states(uow)
    assert {s for s, _ in states.values()} == {"pushed"}
    assert sorted(external_ids(argilla_stack, dataset.id)) == items.item_ids

    assert push_items(uow, dataset, items.round_id).items == 0  # nothing left to push
    again = push_items(uow, dataset, items.round_id, batch_size=4, include_pushed=True)
    assert (again.items, again.pushed, again.repushed) == (7, 7, 7)
    assert sorted(external_ids(argilla_stack, dataset.id)) == items.item_ids
    assert _item_states(uow) == states  # same Argilla ids, same statuses

    # The commit after an accepted batch was lost (crash): the DB thinks 3 items were never pushed.
    lost = items.item_ids[:3]
    with uow() as s:
        s.execute(
            update(AnnotationItem)
            .where(AnnotationItem.id.in_(lost))
            .values(status="pending", argilla_record_id=None)
        )
    redo = push_items(uow, dataset, items.round_id)
    assert (redo.items, redo.pushed) == (3, 3)
    assert sorted(external_ids(argilla_stack, dataset.id)) == items.item_ids
    assert _item_states(uow) == states  # Argilla matched them by our id: the same records

    record = httpx.get(
        f"{argilla_stack.url}/api/v1/records/{states[lost[0]][1]}", headers=argilla_stack.headers
    ).json()
    shown_a = items.worst[lost[0]] if items.swapped[lost[0]] else items.best[lost[0]]
    assert record["fields"] == {
        "prompt": items.prompts[lost[0]],
        "responses": {
            "a": shown_a,
            "b": items.best[lost[0]] if items.swapped[lost[0]] else items.worst[lost[0]],
        },
    }
    # No push order given: priorities follow the item ids (lost[0] is the first).
    assert record["metadata"] == {"round": 1, "strategy": "pvar", "priority": 1}


def test_push_interrupted_by_a_server_stop_completes_after_restart(argilla_stack: ArgillaTarget, uow) -> None:
    if argilla_stack.root is None:
        pytest.skip("external Argilla server: this test stops and restarts a local one")
    items = make_round_items(uow, 10)
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-interrupt"), argilla_stack.workspace)
    seen: list[int] = []

    def stop_after_second_batch(report: PushReport) -> None:
        seen.append(report.pushed)
        if report.batches == 2:
            stop_server(argilla_stack.root)

    try:
        with pytest.raises(AnnotationSyncError, match="4 of 10 items are in Argilla") as err:
            push_items(
                uow, dataset, items.round_id, batch_size=2, backoff=FAST, on_batch=stop_after_second_batch
            )
    finally:
        start_server(argilla_stack.root)
    assert isinstance(err.value.__cause__, AnnotationSyncError)
    assert isinstance(err.value.__cause__.__cause__, httpx.TransportError)  # the original error, chained
    assert "failed after 3 attempt(s)" in str(err.value)
    assert seen == [2, 4]
    states = _item_states(uow)
    assert sum(1 for s, rid in states.values() if s == "pushed" and rid) == 4
    assert sum(1 for s, rid in states.values() if s == "pending" and rid is None) == 6
    assert record_count(argilla_stack, dataset.id) == 4

    resumed = push_items(uow, dataset, items.round_id, batch_size=2)
    assert (resumed.items, resumed.pushed, resumed.batches) == (6, 6, 3)
    assert sorted(external_ids(argilla_stack, dataset.id)) == items.item_ids
    assert all(s == "pushed" and rid for s, rid in _item_states(uow).values())
    assert push_items(uow, dataset, items.round_id).items == 0


def test_unreachable_server_is_a_clear_error() -> None:
    from annotation.api import connect

    with pytest.raises(AnnotationSyncError, match="unreachable after 3 attempts") as err:
        connect("http://127.0.0.1:9", "key", backoff=FAST)
    assert isinstance(err.value.__cause__, httpx.ConnectError)


REVEALING = ("reward_a", "reward_b", "swapped")  # which response the reward model prefers


def test_annotators_cannot_read_rewards_or_the_swap(argilla_stack: ArgillaTarget, uow) -> None:
    items = make_round_items(uow, 4)
    # The Markdown layout is the one older versions created (prompt, response_a, response_b).
    dataset = ensure_dataset(
        owner(argilla_stack), unique("ds-secret"), argilla_stack.workspace, markdown=True
    )
    http = dataset.http
    # A dataset and a record made by an older pvar-loop: rewards and the swap flag as hidden metadata.
    for name, kind in (("reward_a", "float"), ("reward_b", "float"), ("swapped", "terms")):
        settings = {"type": kind} | ({"values": ["true", "false"]} if kind == "terms" else {})
        r = http.post(
            f"/api/v1/datasets/{dataset.id}/metadata-properties",
            json={"name": name, "title": name, "settings": settings, "visible_for_annotators": False},
        )
        assert r.status_code in (201, 409), r.text  # 409: this version still declares it
    old = items.item_ids[0]
    leaked = {"round": 1, "strategy": "pvar", "reward_a": 2.0, "reward_b": 0.0, "swapped": "false"}
    r = http.put(
        f"/api/v1/datasets/{dataset.id}/records/bulk",
        json={
            "items": [
                {
                    "external_id": old,
                    "fields": {"prompt": "p", "response_a": "x", "response_b": "y"},
                    "metadata": leaked,
                }
            ]
        },
    )
    assert r.status_code == 200, r.text
    push_items(uow, dataset, items.round_id, include_pushed=True)  # re-sends every record, the old one too

    who = annotator(argilla_stack, "curious")
    as_annotator = {"X-Argilla-Api-Key": who.api_key}
    with uow() as s:
        stored = {i.id: (i.argilla_record_id, i.swapped) for i in s.scalars(select(AnnotationItem))}
    for item_id, (record_id, swapped) in stored.items():
        got = httpx.get(f"{argilla_stack.url}/api/v1/records/{record_id}", headers=as_annotator)
        assert got.status_code == 200, got.text
        metadata = got.json()["metadata"] or {}
        assert not set(REVEALING) & set(metadata), (item_id, metadata)
        assert swapped == items.swapped[item_id]  # the swap flag lives in our database
    with AnnotatorBot(argilla_stack.url, who.api_key, LookupJudge({})) as bot:
        queue = bot.pending(dataset.id, limit=50)  # what the annotation UI lists
    assert len(queue) == 4
    assert not any(set(REVEALING) & set(r.get("metadata") or {}) for r in queue)


def test_audit_items_look_like_any_other_record(argilla_stack: ArgillaTarget, uow) -> None:
    """The audit slice is labelled blind: through an annotator's key, an audit item's record has the same
    fields, metadata keys and values (round, strategy) as the others, sits in the same queue, and its priority
    is a place in it like any other."""
    items = make_round_items(uow, 6)
    audit = set(items.item_ids[1::3])
    with uow() as s:
        s.execute(update(AnnotationItem).where(AnnotationItem.id.in_(audit)).values(audit=True))
        order = priority_order("pvar", round_item_scores(s, items.round_id, REWARD_MODEL), seed=0)
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-audit"), argilla_stack.workspace)
    assert push_items(uow, dataset, items.round_id, order=order).pushed == 6

    who = annotator(argilla_stack, "blind")
    as_annotator = {"X-Argilla-Api-Key": who.api_key}
    with uow() as s:
        stored = {i.id: (i.argilla_record_id, i.audit) for i in s.scalars(select(AnnotationItem))}
    assert {i for i, (_, a) in stored.items() if a} == audit and len(audit) == 2
    shapes, priorities = {}, {}
    for item_id, (record_id, is_audit) in stored.items():
        got = httpx.get(f"{argilla_stack.url}/api/v1/records/{record_id}", headers=as_annotator)
        assert got.status_code == 200, got.text
        record = got.json()
        metadata = record["metadata"] or {}
        assert "audit" not in metadata and "audit" not in str(record["fields"]).lower()
        shape = (
            tuple(sorted(record)),
            tuple(sorted(record["fields"])),
            tuple(sorted(metadata)),
            # Visible: round and priority only (the strategy is hidden); no PVar to rank the picks by.
            (metadata["round"], "strategy" in metadata),
        )
        shapes.setdefault(shape, set()).add(is_audit)
        priorities[item_id] = metadata["priority"]
    assert list(shapes.values()) == [{False, True}]  # one shape, audit and non-audit records alike
    assert sorted(priorities.values()) == [1, 2, 3, 4, 5, 6]
    assert [priorities[i] for i in order] == [1, 2, 3, 4, 5, 6]
    # The audit picks are not the last ranks (the selection puts them last): placed at seeded random ranks.
    assert {priorities[i] for i in audit} != {5, 6}
    with AnnotatorBot(argilla_stack.url, who.api_key, LookupJudge({})) as bot:
        queue = bot.pending(dataset.id, limit=50)
    ids = {rid: iid for iid, (rid, _) in stored.items()}
    assert [ids[r["id"]] for r in queue] == order  # the queue in priority order, audit picks among the rest
