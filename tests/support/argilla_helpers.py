"""Helpers for tests against the session Argilla server: owner client, annotators, raw responses."""

from __future__ import annotations

import secrets

import httpx

from annotation.annotators import AnnotatorCredentials, create_annotator
from annotation.api import Backoff, connect
from tests.fixtures.argilla import ArgillaTarget

FAST = Backoff(attempts=3, base_s=0.05, cap_s=0.2)  # fail fast in tests that stop the server


def unique(prefix: str) -> str:
    """A dataset/user name no other test (or earlier session on an external server) uses."""
    return f"{prefix}-{secrets.token_hex(4)}"


def owner(stack: ArgillaTarget):
    return connect(stack.url, stack.api_key)


def annotator(stack: ArgillaTarget, prefix: str = "ann") -> AnnotatorCredentials:
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=60) as http:
        return create_annotator(http, unique(prefix), stack.workspace)


def respond(stack: ArgillaTarget, who: AnnotatorCredentials, record_id: str, status: str, **values) -> dict:
    """Answer one record the way the UI does (POST /api/v1/records/{id}/responses)."""
    # Always send `values` (maybe empty): Argilla 2.8 answers 500 to a discard with no values at all
    # (its search-index mapping iterates response.values), with Elasticsearch as with our engine.
    body = {"status": status, "values": {k: {"value": v} for k, v in values.items()}}
    r = httpx.post(
        f"{stack.url}/api/v1/records/{record_id}/responses",
        json=body,
        headers={"X-Argilla-Api-Key": who.api_key},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return r.json()


def record_count(stack: ArgillaTarget, dataset_id: str) -> int:
    r = httpx.get(f"{stack.url}/api/v1/datasets/{dataset_id}/progress", headers=stack.headers, timeout=60)
    r.raise_for_status()
    return r.json()["total"]


def external_ids(stack: ArgillaTarget, dataset_id: str) -> list[str]:
    """External ids of every record, duplicates included (so a duplicate would show)."""
    out, offset = [], 0
    while True:
        r = httpx.get(
            f"{stack.url}/api/v1/datasets/{dataset_id}/records",
            params={"offset": offset, "limit": 1000},
            headers=stack.headers,
            timeout=60,
        )
        r.raise_for_status()
        items = r.json()["items"]
        out += [i["external_id"] for i in items]
        offset += len(items)
        if len(items) < 1000:
            return out


def fresh_workspace(stack: ArgillaTarget, prefix: str = "ws") -> str:
    """A new workspace of its own: blind overlap places records with every annotator of the project's
    workspace, so a test that counts placements needs annotators no other test shares."""
    name = unique(prefix)
    r = httpx.post(f"{stack.url}/api/v1/workspaces", json={"name": name}, headers=stack.headers, timeout=60)
    r.raise_for_status()
    return name


def annotator_in(stack: ArgillaTarget, workspace: str, prefix: str = "ann") -> AnnotatorCredentials:
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=60) as http:
        return create_annotator(http, unique(prefix), workspace)


def own_records(stack: ArgillaTarget, who: AnnotatorCredentials, dataset_name: str) -> dict[str, str]:
    """{external id: record id} of the records `who` sees in datasets named `dataset_name`, through the
    annotator's own key (blind overlap: their own dataset)."""
    headers = {"X-Argilla-Api-Key": who.api_key}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as http:
        datasets = http.get("/api/v1/me/datasets").json()["items"]
        out: dict[str, str] = {}
        for d in (d for d in datasets if d["name"] == dataset_name):
            r = http.post(f"/api/v1/me/datasets/{d['id']}/records/search", params={"limit": 1000}, json={})
            r.raise_for_status()
            out |= {i["record"]["external_id"]: i["record"]["id"] for i in r.json()["items"]}
        return out
