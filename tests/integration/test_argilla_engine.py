"""The script-free search engine: responses and suggestions reach (and leave) the search index.

Metrics and searches below are answered from the index, not the database, so they show what the engine wrote.
On the local stack (osmem) the stock engine answers these submits with HTTP 500.
"""

from __future__ import annotations

import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import argilla as rg
import httpx
import pytest

from tests.fixtures.argilla import ArgillaTarget

pytestmark = pytest.mark.argilla


@dataclass(frozen=True)
class Labelled:
    dataset_id: str
    record_ids: list[str]
    question_id: str
    annotator_keys: list[str]


def _api(target: ArgillaTarget, api_key: str | None = None) -> httpx.Client:
    key = api_key or target.api_key
    return httpx.Client(base_url=f"{target.url}/api/v1", headers={"X-Argilla-Api-Key": key}, timeout=30)


@pytest.fixture(scope="module")
def labelled(argilla_stack: ArgillaTarget) -> Labelled:
    """A published dataset (one record per test) and three annotators in its workspace."""
    client = rg.Argilla(api_url=argilla_stack.url, api_key=argilla_stack.api_key)
    settings = rg.Settings(
        fields=[rg.TextField(name="prompt"), rg.TextField(name="chosen"), rg.TextField(name="rejected")],
        questions=[rg.LabelQuestion(name="pref", labels=["a", "b", "tie"])],
    )
    name = f"engine-{uuid.uuid4().hex[:8]}"
    dataset = rg.Dataset(name=name, workspace=argilla_stack.workspace, settings=settings, client=client)
    dataset.create()
    dataset.records.log([{"id": f"r{i}", "prompt": "p", "chosen": "x", "rejected": "y"} for i in range(3)])
    with _api(argilla_stack) as http:
        ds_id = str(dataset.id)
        ws_id = next(
            w["id"]
            for w in http.get("/me/workspaces").json()["items"]
            if w["name"] == argilla_stack.workspace
        )
        keys = []
        for _ in range(3):
            user = {"first_name": "A", "username": f"ann-{secrets.token_hex(4)}", "password": "pass-word-1"}
            created = http.post("/users", json={**user, "role": "annotator"}).raise_for_status().json()
            http.post(f"/workspaces/{ws_id}/users", json={"user_id": created["id"]}).raise_for_status()
            keys.append(created["api_key"])
        records = http.get(f"/datasets/{ds_id}/records").raise_for_status().json()["items"]
        question_id = http.get(f"/datasets/{ds_id}/questions").json()["items"][0]["id"]
    return Labelled(ds_id, sorted(r["id"] for r in records), question_id, keys)


def _submitted(target: ArgillaTarget, api_key: str, dataset_id: str) -> int:
    with _api(target, api_key) as http:
        return (
            http.get(f"/me/datasets/{dataset_id}/metrics").raise_for_status().json()["responses"]["submitted"]
        )


def test_concurrent_responses_on_one_record_all_reach_the_index(
    argilla_stack: ArgillaTarget, labelled: Labelled
) -> None:
    record_id = labelled.record_ids[0]
    with _api(argilla_stack) as http:
        before = http.get(f"/datasets/{labelled.dataset_id}/progress").json()

    def submit(api_key: str) -> int:
        with _api(argilla_stack, api_key) as http:
            body = {"values": {"pref": {"value": "a"}}, "status": "submitted"}
            return http.post(f"/records/{record_id}/responses", json=body).status_code

    with ThreadPoolExecutor(len(labelled.annotator_keys)) as pool:
        codes = list(pool.map(submit, labelled.annotator_keys))

    assert codes == [201] * len(labelled.annotator_keys)
    # Each annotator's own progress comes from their response inside the record's search document.
    assert all(_submitted(argilla_stack, k, labelled.dataset_id) >= 1 for k in labelled.annotator_keys)
    with _api(argilla_stack) as http:
        after = http.get(f"/datasets/{labelled.dataset_id}/progress").json()
    assert after["total"] == 3
    assert (after["completed"], after["pending"]) == (before["completed"] + 1, before["pending"] - 1)


def test_updated_then_deleted_response_leaves_the_index(
    argilla_stack: ArgillaTarget, labelled: Labelled
) -> None:
    key = labelled.annotator_keys[0]
    record_id = labelled.record_ids[1]
    before = _submitted(argilla_stack, key, labelled.dataset_id)
    with _api(argilla_stack, key) as http:
        body = {"values": {"pref": {"value": "b"}}, "status": "draft"}
        response = http.post(f"/records/{record_id}/responses", json=body).raise_for_status().json()
        body = {"values": {"pref": {"value": "tie"}}, "status": "submitted"}
        http.put(f"/responses/{response['id']}", json=body).raise_for_status()
    assert _submitted(argilla_stack, key, labelled.dataset_id) == before + 1  # replaced, not duplicated

    with _api(argilla_stack, key) as http:
        http.delete(f"/responses/{response['id']}").raise_for_status()
        metrics = http.get(f"/me/datasets/{labelled.dataset_id}/metrics").json()["responses"]
    assert (metrics["submitted"], metrics["draft"]) == (before, 0)


def test_deleted_suggestion_leaves_the_index(argilla_stack: ArgillaTarget, labelled: Labelled) -> None:
    record_id = labelled.record_ids[2]
    scope = {"entity": "suggestion", "question": "pref", "property": "value"}
    search = {"filters": {"and": [{"type": "terms", "scope": scope, "values": ["b"]}]}}
    with _api(argilla_stack) as http:
        body = {"question_id": labelled.question_id, "value": "b", "agent": "policy", "score": 0.7}
        suggestion = http.put(f"/records/{record_id}/suggestions", json=body).raise_for_status().json()
        found = http.post(f"/datasets/{labelled.dataset_id}/records/search", json=search).json()
        assert [item["record"]["id"] for item in found["items"]] == [record_id]

        http.delete(f"/suggestions/{suggestion['id']}").raise_for_status()
        found = http.post(f"/datasets/{labelled.dataset_id}/records/search", json=search).json()
    assert found["total"] == 0
