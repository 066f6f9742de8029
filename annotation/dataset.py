"""The Argilla dataset annotators work in: a pairwise preference question over two responses to a prompt.

`ensure_dataset` is idempotent: it creates the dataset once and finds it again afterwards, so every command
(push, pull, the bot) can call it.

What annotators see: the prompt, then responses A and B side by side as plain text (a CustomField whose
Handlebars template escapes the model output, so "<b>x</b>" or a code fence shows literally), with the short
rules above them; `[argilla] markdown = true` instead creates the Markdown layout (three stacked TextFields,
rendered by Argilla's sanitising Markdown renderer; also the layout of datasets made by older versions).
Annotators may see and filter two metadata: `round` (to work on the current round) and `priority` (1 = label
first; the annotation link sorts on it). The strategy and the prompt's source id (the operator's own id) are hidden; rewards, the A/B swap, PVar and the audit flag
are not metadata at all (they stay in our database): Argilla's API returns a record's metadata, hidden or
not, to annotators, and they would tell which response the reward model prefers, or which records are the
audit slice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from annotation.api import AnnotationSyncError, request_json
from storage.statuses import Choice

_LOG = logging.getLogger(__name__)

PROMPT = "prompt"
PAIR = "responses"  # the side-by-side CustomField: {"a": shown A, "b": shown B}
STACKED = ("response_a", "response_b")  # the Markdown layout's TextFields
SIDE_BY_SIDE, MARKDOWN = "side-by-side", "markdown"  # DatasetHandle.layout
QUESTION = "preference"
RATIONALE = "rationale"
LABELS = {  # the question's options: the voting answers (a discard is Argilla's own "discard" button)
    Choice.A: "Response A is better",
    Choice.B: "Response B is better",
    Choice.TIE: "Both are about equally good (or equally bad)",
}
SOURCE_ID = "source_id"  # the prompt's id in the operator's own data (Prompt.source_id), when it had one
METADATA = ("round", "strategy", "priority", SOURCE_ID)
VISIBLE_METADATA = ("round", "priority")  # filterable / sortable by annotators

RULES = (
    "Pick the response a careful user would rather receive: correct and honest first, then helpful, then "
    "clear. Choose Tie only when neither is clearly better (not when both are merely fine or both long). "
    "Length and the A/B order mean nothing. Saved a draft? It is not an answer yet: if the queue says "
    '"You have no pending records", switch its status filter from Pending to Draft and submit them.'
)

GUIDELINES = """\
## Which response is better?

You see one **prompt** and two responses, **A** and **B**, written by the same assistant.
Pick the response a careful user would rather receive:

1. **Correct and honest** first: wrong facts, broken code or made-up claims lose, however fluent.
2. **Helpful**: it answers what was asked, completely, without padding.
3. **Clear and safe**: readable, and it refuses only what should be refused.

Choose **Tie** only when neither response is clearly better: not when both are merely fine, not when
both are long. Do not prefer a response for being longer.
The order of A and B is random: do not read anything into it.

Press **Discard** when the prompt itself cannot be judged (unreadable, empty, not a request) or when you
cannot judge it (you lack the expertise): discarded records do not count as votes.
The rationale is optional; one sentence on why helps us audit disagreements.

Responses are shown as plain text: code fences, `<tags>` and Markdown appear exactly as the model wrote them.
Work through the queue in **priority** order (the link you were given sorts by it; priority 1 first) and
filter on the current **round**. **Save as draft** is not an answer: a draft leaves your Pending queue but is
not counted until you submit it. When the queue says "You have no pending records" but you saved drafts,
switch the status filter from **Pending** to **Draft** and submit each of them.
"""

_PLAIN_TEXT = "white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;margin:0;font:inherit"
# Handlebars' {{...}} escapes HTML, so model output is text here whatever it contains.
PAIR_TEMPLATE = f"""\
<div class="pvar-rules" style="margin:0 0 12px;padding:6px 10px;border-left:3px solid #7a7a7a">{RULES}</div>
<div class="pvar-pair" style="display:flex;gap:16px;align-items:stretch">
  <section id="pvar-response-a" style="flex:1 1 0;min-width:0;border:1px solid #ccc;border-radius:6px;padding:8px">
    <h4 style="margin:0 0 8px">Response A</h4>
    <div class="pvar-text" style="{_PLAIN_TEXT}">{{{{record.fields.{PAIR}.a}}}}</div>
  </section>
  <section id="pvar-response-b" style="flex:1 1 0;min-width:0;border:1px solid #ccc;border-radius:6px;padding:8px">
    <h4 style="margin:0 0 8px">Response B</h4>
    <div class="pvar-text" style="{_PLAIN_TEXT}">{{{{record.fields.{PAIR}.b}}}}</div>
  </section>
</div>
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
    layout: str = SIDE_BY_SIDE  # or MARKDOWN: which fields its records carry

    @property
    def http(self) -> httpx.Client:
        return self.client.http_client

    @property
    def url(self) -> str:
        return str(self.client.api_url).rstrip("/")

    @property
    def annotation_url(self) -> str:
        """Where an annotator opens the dataset in the web UI (in priority order)."""
        return f"{self.url}/dataset/{self.id}/annotation-mode?{SORT_BY_PRIORITY}"

    def round_url(self, round_number: int) -> str:
        """The annotation page filtered on one round, in priority order: what to send annotators."""
        return f"{self.annotation_url}&metadata=round.ge{round_number}.le{round_number}"


# The web UI keeps its sort and filters in the query string (sort=<entity>.<name>.<order>); without a sort
# Argilla shows each annotator the queue in a per-user random order.
SORT_BY_PRIORITY = "sort=metadata.priority.asc"


def build_settings(client, min_submitted: int, *, markdown: bool = False, blind: bool = False):
    """Settings of the preference dataset (`min_submitted` annotators must answer each record): the
    side-by-side plain-text layout, or with `markdown` the stacked Markdown layout. A `blind` dataset (one
    annotator's own, annotation.blind) declares only the metadata annotators sort and filter on."""
    import argilla as rg

    if min_submitted < 1:
        raise ValueError(f"min_submitted must be >= 1, got {min_submitted}")
    hidden: dict[str, Any] = {"visible_for_annotators": False, "client": client}
    shown: dict[str, Any] = {"visible_for_annotators": True, "client": client}
    fields: list[Any] = [rg.TextField(name=PROMPT, title="Prompt", use_markdown=markdown, client=client)]
    if markdown:
        fields += [
            rg.TextField(name=STACKED[0], title="Response A", use_markdown=True, client=client),
            rg.TextField(name=STACKED[1], title="Response B", use_markdown=True, client=client),
        ]
    else:
        fields.append(rg.CustomField(name=PAIR, title="Responses", template=PAIR_TEMPLATE, _client=client))
    return rg.Settings(
        guidelines=GUIDELINES,
        fields=fields,
        questions=[
            rg.LabelQuestion(
                name=QUESTION,
                title="Which response is better?",
                description=RULES,
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
            rg.IntegerMetadataProperty(name="round", title="Round", **shown),
            # Hidden from the UI only: the API returns every metadata value to annotators.
            *(
                []
                if blind
                else [
                    rg.TermsMetadataProperty(name="strategy", title="Selection strategy", **hidden),
                    rg.TermsMetadataProperty(name=SOURCE_ID, title="Source id", **hidden),
                ]
            ),
            rg.IntegerMetadataProperty(name="priority", title="Priority (1 = first)", **shown),
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


def _field_names(http: httpx.Client, dataset_id: str) -> set[str]:
    data = request_json(http, "GET", f"/api/v1/datasets/{dataset_id}/fields", what="dataset fields")
    return {f["name"] for f in data["items"]}


def _layout(fields: set[str]) -> str:
    return SIDE_BY_SIDE if PAIR in fields else MARKDOWN


def _check_schema(http: httpx.Client, dataset: dict) -> str:
    """The dataset's layout; refuses a same-named dataset that lacks what push and pull rely on (instead of
    failing mid-push)."""
    path = f"/api/v1/datasets/{dataset['id']}"
    fields = _field_names(http, dataset["id"])
    questions = {
        q["name"] for q in request_json(http, "GET", f"{path}/questions", what="dataset questions")["items"]
    }
    layout = _layout(fields)
    wanted = (PROMPT, PAIR) if layout == SIDE_BY_SIDE else (PROMPT, *STACKED)
    missing = [f"field {f!r}" for f in wanted if f not in fields]
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
    return layout


def _upgrade_metadata(http: httpx.Client, dataset: dict) -> None:
    """Give a dataset made by an older version what annotators now filter and sort on: `round` visible to
    them, a `priority` property (metadata properties, unlike fields, can be changed after publishing)."""
    path = f"/api/v1/datasets/{dataset['id']}/metadata-properties"  # POST here, GET under /api/v1/me
    listed = request_json(
        http, "GET", f"/api/v1/me/datasets/{dataset['id']}/metadata-properties", what="metadata properties"
    )["items"]
    props = {p["name"]: p for p in listed}
    for name in VISIBLE_METADATA:
        prop = props.get(name)
        if prop is None:
            request_json(
                http,
                "POST",
                path,
                json={
                    "name": name,
                    "title": "Priority (1 = first)" if name == "priority" else name.title(),
                    "settings": {"type": "integer"},
                    "visible_for_annotators": True,
                },
                what=f"add metadata property {name!r}",
            )
        elif not prop.get("visible_for_annotators"):
            request_json(
                http,
                "PATCH",
                f"/api/v1/metadata-properties/{prop['id']}",
                json={"visible_for_annotators": True},
                what=f"show metadata property {name!r} to annotators",
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


def _reuse(
    client, dataset: dict, workspace: str, min_submitted: int, markdown: bool, blind: bool = False
) -> DatasetHandle:
    layout = _check_schema(client.http_client, dataset)
    if layout != (MARKDOWN if markdown else SIDE_BY_SIDE):
        # Fields cannot change once a dataset is published: it keeps the layout it was created with.
        _LOG.warning(
            "Argilla dataset %s has the %s layout, [argilla] markdown = %s asks for %s; the dataset keeps its "
            "layout (set another [argilla] dataset name to get the other one)",
            dataset["name"],
            layout,
            str(markdown).lower(),
            MARKDOWN if markdown else SIDE_BY_SIDE,
        )
    _upgrade_metadata(client.http_client, dataset)
    if not blind:
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
    return DatasetHandle(client, dataset["id"], dataset["name"], workspace, actual, layout=layout)


def open_dataset(client, name: str, workspace: str) -> DatasetHandle | None:
    """The existing preference dataset, or None (nothing is created)."""
    found = find_dataset(client.http_client, name, workspace)
    if found is None:
        return None
    layout = _check_schema(client.http_client, found)
    return DatasetHandle(client, found["id"], found["name"], workspace, _distribution(found), layout=layout)


def ensure_dataset(
    client, name: str, workspace: str, min_submitted: int = 1, *, markdown: bool = False, blind: bool = False
) -> DatasetHandle:
    """The preference dataset `name` in `workspace`, created (and published) if it does not exist yet, in the
    side-by-side plain-text layout (the stacked Markdown layout with `markdown`). An existing dataset keeps
    its layout and gets the metadata annotators filter and sort on."""
    from argilla._exceptions import ArgillaError

    existing = find_dataset(client.http_client, name, workspace)
    if existing is not None:
        return _reuse(client, existing, workspace, min_submitted, markdown, blind)
    import argilla as rg

    settings = build_settings(client, min_submitted, markdown=markdown, blind=blind)
    dataset = rg.Dataset(name=name, workspace=workspace, settings=settings, client=client)
    try:
        dataset.create()
    except (ArgillaError, httpx.TransportError) as e:
        # Another process may have created it between our lookup and create: reuse theirs.
        existing = find_dataset(client.http_client, name, workspace)
        if existing is not None:
            return _reuse(client, existing, workspace, min_submitted, markdown, blind)
        raise AnnotationSyncError(f"creating Argilla dataset {name!r} in {workspace!r}: {e}") from e
    _LOG.info("created Argilla dataset %s/%s (%s)", workspace, name, dataset.id)
    layout = MARKDOWN if markdown else SIDE_BY_SIDE
    return DatasetHandle(client, str(dataset.id), name, workspace, min_submitted, created=True, layout=layout)


def handle_for(client, dataset_id: str) -> DatasetHandle:
    """A handle on an existing dataset by id (e.g. one an operator configured by hand), given the metadata
    push sends and annotators filter and sort on (`round` visible, `priority`)."""
    data = request_json(client.http_client, "GET", f"/api/v1/datasets/{dataset_id}", what="get dataset")
    ws = request_json(
        client.http_client, "GET", f"/api/v1/workspaces/{data['workspace_id']}", what="get workspace"
    )
    layout = _layout(_field_names(client.http_client, data["id"]))
    _upgrade_metadata(client.http_client, data)
    return DatasetHandle(client, data["id"], data["name"], ws["name"], _distribution(data), layout=layout)
