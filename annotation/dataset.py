"""The Argilla dataset annotators work in: a pairwise preference question over two responses to a prompt.

`ensure_dataset` is idempotent: it creates the dataset once and finds it again afterwards, so every command
(push, pull, the bot) can call it. Metadata (round, strategy, the prompt's source id) is hidden in the annotators' UI; the
rewards and the A/B swap are not metadata at all (they stay in our database), because Argilla's API returns a
record's metadata to annotators too, and they would tell which response the reward model prefers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from annotation.api import AnnotationSyncError, request_json

_LOG = logging.getLogger(__name__)

FIELDS = ("prompt", "response_a", "response_b")
QUESTION = "preference"
RATIONALE = "rationale"
LABELS = {
    "a": "Response A is better",
    "b": "Response B is better",
    "tie": "Both are about equally good (or equally bad)",
}
SOURCE_ID = "source_id"  # the prompt's id in the operator's own data (Prompt.source_id), when it had one
METADATA = ("round", "strategy", SOURCE_ID)

GUIDELINES = """\
## Which response is better?

You see one **prompt** and two responses, **A** and **B**, written by the same assistant.
Pick the response a careful user would rather receive:

1. **Correct and honest** first: wrong facts, broken code or made-up claims lose, however fluent.
2. **Helpful**: it answers what was asked, completely, without padding.
3. **Clear and safe**: readable, and it refuses only what should be refused.

Choose **tie** only when neither response is clearly better. Do not prefer a response for being longer.
The order of A and B is random: do not read anything into it.

Press **Discard** when the prompt itself cannot be judged (unreadable, empty, not a request) or when you
cannot judge it (you lack the expertise): discarded records do not count as votes.
The rationale is optional; one sentence on why helps us audit disagreements.
"""


@dataclass(frozen=True)
class DatasetHandle:
    """A dataset on a server, with the SDK client that reaches it."""

    client: Any  # argilla.Argilla
    id: str
    name: str
    workspace: str
    min_submitted: int
    created: bool = False

    @property
    def http(self) -> httpx.Client:
        return self.client.http_client

    @property
    def url(self) -> str:
        return str(self.client.api_url).rstrip("/")

    @property
    def annotation_url(self) -> str:
        """Where an annotator opens the dataset in the web UI."""
        return f"{self.url}/dataset/{self.id}/annotation-mode"


def build_settings(client, min_submitted: int):
    """Settings of the preference dataset (`min_submitted` annotators must answer each record)."""
    import argilla as rg

    if min_submitted < 1:
        raise ValueError(f"min_submitted must be >= 1, got {min_submitted}")
    hidden: dict[str, Any] = {"visible_for_annotators": False, "client": client}
    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[
            rg.TextField(name="prompt", title="Prompt", use_markdown=True, client=client),
            rg.TextField(name="response_a", title="Response A", use_markdown=True, client=client),
            rg.TextField(name="response_b", title="Response B", use_markdown=True, client=client),
        ],
        questions=[
            rg.LabelQuestion(
                name=QUESTION,
                title="Which response is better?",
                labels=LABELS,
                required=True,
                client=client,
            ),
            rg.TextQuestion(
                name=RATIONALE,
                title="Why? (optional)",
                required=False,
                use_markdown=False,
                client=client,
            ),
        ],
        metadata=[
            rg.IntegerMetadataProperty(name="round", title="Round", **hidden),
            rg.TermsMetadataProperty(name="strategy", title="Selection strategy", **hidden),
            rg.TermsMetadataProperty(name=SOURCE_ID, title="Source id", **hidden),
        ],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def workspace_id(http: httpx.Client, workspace: str) -> str:
    items = request_json(http, "GET", "/api/v1/me/workspaces", what="list workspaces")["items"]
    for w in items:
        if w["name"] == workspace:
            return w["id"]
    names = ", ".join(sorted(w["name"] for w in items)) or "none"
    raise AnnotationSyncError(f"Argilla workspace {workspace!r} not found (this key sees: {names})", 404)


def find_dataset(http: httpx.Client, name: str, workspace: str) -> dict | None:
    """The dataset's JSON, or None when the workspace has no dataset of that name."""
    ws = workspace_id(http, workspace)
    items = request_json(
        http, "GET", "/api/v1/me/datasets", params={"workspace_id": ws, "name": name}, what="find dataset"
    )["items"]
    return next((d for d in items if d["name"] == name), None)


def _check_schema(http: httpx.Client, dataset: dict) -> None:
    """Refuse a same-named dataset that lacks what push and pull rely on (instead of failing mid-push)."""
    path = f"/api/v1/datasets/{dataset['id']}"
    fields = {f["name"] for f in request_json(http, "GET", f"{path}/fields", what="dataset fields")["items"]}
    questions = {
        q["name"] for q in request_json(http, "GET", f"{path}/questions", what="dataset questions")["items"]
    }
    missing = [f"field {f!r}" for f in FIELDS if f not in fields]
    missing += [f"question {q!r}" for q in (QUESTION,) if q not in questions]
    if missing:
        raise AnnotationSyncError(
            f"Argilla dataset {dataset['name']!r} ({dataset['id']}) exists but lacks {', '.join(missing)}: "
            "it was not created by pvar-loop; use another [argilla] dataset name"
        )
    if dataset.get("status") != "ready":
        raise AnnotationSyncError(
            f"Argilla dataset {dataset['name']!r} is not published (status {dataset.get('status')!r})"
        )


def _distribution(dataset: dict) -> int:
    return int((dataset.get("distribution") or {}).get("min_submitted") or 1)


def _add_source_id_property(http: httpx.Client, dataset: dict) -> None:
    """Datasets created before records carried `source_id` lack its metadata property, and refuse records
    with metadata they do not declare: add it (hidden from annotators, like the others)."""
    have = request_json(
        http,
        "GET",
        f"/api/v1/me/datasets/{dataset['id']}/metadata-properties",
        what="dataset metadata properties",
    )["items"]
    if any(m["name"] == SOURCE_ID for m in have):
        return
    body = {
        "name": SOURCE_ID,
        "title": "Source id",
        "settings": {"type": "terms"},
        "visible_for_annotators": False,
    }
    try:
        request_json(
            http,
            "POST",
            f"/api/v1/datasets/{dataset['id']}/metadata-properties",
            json=body,
            what=f"add metadata property {SOURCE_ID!r}",
        )
    except AnnotationSyncError as e:
        if e.status_code != 409:  # 409: another process added it meanwhile
            raise


def _reuse(client, dataset: dict, workspace: str, min_submitted: int) -> DatasetHandle:
    _check_schema(client.http_client, dataset)
    _add_source_id_property(client.http_client, dataset)
    actual = _distribution(dataset)
    if actual != min_submitted:
        try:
            dataset = request_json(
                client.http_client,
                "PATCH",
                f"/api/v1/datasets/{dataset['id']}",
                json={"distribution": {"strategy": "overlap", "min_submitted": min_submitted}},
                what="update task distribution",
            )
            actual = _distribution(dataset)
        except AnnotationSyncError as e:
            if e.status_code != 422:
                raise
            # Argilla refuses once responses exist; keep labelling with the overlap already in place.
            _LOG.warning(
                "dataset %s keeps min_submitted=%d (configured %d): %s",
                dataset["name"],
                actual,
                min_submitted,
                e,
            )
    return DatasetHandle(client, dataset["id"], dataset["name"], workspace, actual)


def open_dataset(client, name: str, workspace: str) -> DatasetHandle | None:
    """The existing preference dataset, or None (nothing is created)."""
    found = find_dataset(client.http_client, name, workspace)
    if found is None:
        return None
    _check_schema(client.http_client, found)
    return DatasetHandle(client, found["id"], found["name"], workspace, _distribution(found))


def ensure_dataset(client, name: str, workspace: str, min_submitted: int = 1) -> DatasetHandle:
    """The preference dataset `name` in `workspace`, created (and published) if it does not exist yet."""
    from argilla._exceptions import ArgillaError

    existing = find_dataset(client.http_client, name, workspace)
    if existing is not None:
        return _reuse(client, existing, workspace, min_submitted)
    import argilla as rg

    dataset = rg.Dataset(
        name=name, workspace=workspace, settings=build_settings(client, min_submitted), client=client
    )
    try:
        dataset.create()
    except (ArgillaError, httpx.TransportError) as e:
        # Another process may have created it between our lookup and create: reuse theirs.
        existing = find_dataset(client.http_client, name, workspace)
        if existing is not None:
            return _reuse(client, existing, workspace, min_submitted)
        raise AnnotationSyncError(f"creating Argilla dataset {name!r} in {workspace!r}: {e}") from e
    _LOG.info("created Argilla dataset %s/%s (%s)", workspace, name, dataset.id)
    return DatasetHandle(client, str(dataset.id), name, workspace, min_submitted, created=True)


def handle_for(client, dataset_id: str) -> DatasetHandle:
    """A handle on an existing dataset by id (e.g. one an operator configured by hand)."""
    data = request_json(client.http_client, "GET", f"/api/v1/datasets/{dataset_id}", what="get dataset")
    ws = request_json(
        client.http_client, "GET", f"/api/v1/workspaces/{data['workspace_id']}", what="get workspace"
    )
    return DatasetHandle(client, data["id"], data["name"], ws["name"], _distribution(data))
