"""Blind overlap: with `min_submitted` >= 2 every annotator labels in a dataset of their own.

Argilla lets an annotator read every response on a record they can see (GET /api/v1/records/{id}?include=
responses, their records search) and every metadata value, hidden or not; and annotators working down one
shared priority link all take the same top records until the overlap completes them (answers bought twice).
Argilla is feature-frozen, so the loop places the records itself: each item goes to `min_submitted`
annotators (least-loaded first, ties broken by a hash of the round and the names, so the assignment is
deterministic given the round and what Argilla holds), each annotator has a workspace `<workspace>--<name>`
of which they are the only annotator, holding a dataset of the project's name with only their records,
carrying `round` and `priority` and nothing else.

What Argilla holds is the assignment: an item's annotators are the annotator datasets that have its record
(by external id), so nothing extra is stored, a record deleted in Argilla is placed again, and an annotator
added later gets the items whose coverage is short. The roster is the annotators of the project's workspace
(`pvar-loop annotators add` puts them there).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from annotation.annotators import SEPARATOR, Member, workspace_members
from annotation.api import DEFAULT_BACKOFF, AnnotationSyncError, Backoff, request_json
from annotation.dataset import MARKDOWN, DatasetHandle, ensure_dataset, find_dataset
from annotation.transfer import delete_in_batches, fetch_records

_LOG = logging.getLogger(__name__)


def blind(dataset: DatasetHandle) -> bool:
    """Whether the project's dataset places records in per-annotator datasets (overlap of 2 or more)."""
    return dataset.min_submitted >= 2


def annotator_workspace(workspace: str, username: str) -> str:
    return f"{workspace}{SEPARATOR}{username}"


def roster(project: DatasetHandle, backoff: Backoff = DEFAULT_BACKOFF) -> list[Member]:
    """The annotators of the project's workspace, by username."""
    members = workspace_members(project.http, project.workspace, backoff=backoff)
    return [m for m in members if m.role == "annotator"]


def _workspaces(project: DatasetHandle, backoff: Backoff) -> dict[str, str]:
    data = request_json(project.http, "GET", "/api/v1/me/workspaces", what="list workspaces", backoff=backoff)
    return {w["name"]: w["id"] for w in data["items"]}


def _ensure_workspace(project: DatasetHandle, name: str, member: Member, backoff: Backoff) -> None:
    """`name` exists and has `member` (idempotent: 409 means already there)."""
    ws = _workspaces(project, backoff).get(name)
    if ws is None:
        try:
            ws = request_json(
                project.http,
                "POST",
                "/api/v1/workspaces",
                json={"name": name},
                what=f"create workspace {name}",
            )["id"]
        except AnnotationSyncError as e:
            if e.status_code != 409:
                raise
            ws = _workspaces(project, backoff)[name]
    try:
        request_json(
            project.http,
            "POST",
            f"/api/v1/workspaces/{ws}/users",
            json={"user_id": member.user_id},
            what=f"add {member.username} to workspace {name}",
            backoff=backoff,
        )
    except AnnotationSyncError as e:
        if e.status_code != 409:
            raise


def annotator_dataset(
    project: DatasetHandle, member: Member, backoff: Backoff = DEFAULT_BACKOFF
) -> DatasetHandle:
    """`member`'s own dataset (their workspace and its dataset created on first use)."""
    name = annotator_workspace(project.workspace, member.username)
    _ensure_workspace(project, name, member, backoff)
    markdown = project.layout == MARKDOWN
    return ensure_dataset(project.client, project.name, name, 1, markdown=markdown, blind=True)


def annotator_datasets(
    project: DatasetHandle, backoff: Backoff = DEFAULT_BACKOFF
) -> dict[str, DatasetHandle]:
    """{username: their dataset} of every annotator workspace that has one, removed annotators' included
    (pull reads what they answered before they left)."""
    prefix = project.workspace + SEPARATOR
    out: dict[str, DatasetHandle] = {}
    for ws in sorted(_workspaces(project, backoff)):
        if not ws.startswith(prefix):
            continue
        found = find_dataset(project.http, project.name, ws)
        if found is not None:
            out[ws[len(prefix) :]] = DatasetHandle(
                project.client, found["id"], found["name"], ws, 1, layout=project.layout
            )
    return out


def annotator_records(
    project: DatasetHandle, backoff: Backoff = DEFAULT_BACKOFF, *, responses: bool = True
) -> list[dict]:
    """The records of every annotator dataset, one list (an item's record appears once per annotator)."""
    records: list[dict] = []
    for handle in annotator_datasets(project, backoff).values():
        records += fetch_records(handle, backoff, responses=responses)
    return records


def assign(
    order: Sequence[str],
    holders: dict[str, set[str]],
    annotators: Sequence[str],
    k: int,
    salt: str,
    answered_by: dict[str, set[str]] | None = None,
) -> dict[str, list[str]]:
    """{annotator: item ids to send them}, so that each item of `order` is held by min(k, annotators) of
    `annotators`; `holders` is who holds which item already, `answered_by` who answered it (stored answers:
    an annotator no longer on the roster who answered still covers the item). Items go, in `order`, to the
    annotators holding the fewest items of `order` so far; ties are broken by a hash of (salt, item,
    annotator), so the result depends only on its inputs."""
    roster_set = set(annotators)
    load = Counter({a: 0 for a in annotators})
    for item in order:
        for a in holders.get(item, set()) & roster_set:
            load[a] += 1
    out: dict[str, list[str]] = {a: [] for a in annotators}
    for item in order:
        have = holders.get(item, set()) & roster_set
        gone = (answered_by or {}).get(item, set()) - roster_set
        free = [a for a in annotators if a not in have]
        free.sort(key=lambda a: (load[a], _tie(salt, item, a)))
        for a in free[: max(0, k - len(have) - len(gone))]:
            out[a].append(item)
            load[a] += 1
    return {a: items for a, items in out.items() if items}


def _tie(salt: str, item: str, annotator: str) -> str:
    return hashlib.sha256(f"{salt}\0{item}\0{annotator}".encode()).hexdigest()


@dataclass(frozen=True)
class Placement:
    """Where a round's items go: the annotators' datasets, who holds what, what each must get."""

    datasets: dict[str, DatasetHandle]  # username -> their dataset (roster only)
    holders: dict[str, set[str]]  # item id -> usernames whose dataset holds its record
    send: dict[str, list[str]]  # username -> item ids to send (new placements)


def place(
    project: DatasetHandle,
    item_ids: Sequence[str],
    salt: str,
    backoff: Backoff = DEFAULT_BACKOFF,
    answered_by: dict[str, set[str]] | None = None,
    excluded: Collection[str] = frozenset(),
) -> Placement:
    """Give every roster annotator their dataset and decide which of `item_ids` (priority order) each must
    get so that every item has `min_submitted` annotators (all of them when fewer). `excluded` annotators
    (`annotators exclude`) are off the roster: what they hold does not cover an item, nothing new goes to
    them."""
    members = [m for m in roster(project, backoff) if m.username not in excluded]
    if not members:
        raise AnnotationSyncError(
            f"min_submitted = {project.min_submitted} places each item with that many annotators, and "
            f"workspace {project.workspace!r} has none: add them with `pvar-loop annotators add NAME`"
        )
    if len(members) < project.min_submitted:
        _LOG.warning(
            "min_submitted = %d but workspace %s has %d annotators: items wait for more (`annotators add`)",
            project.min_submitted,
            project.workspace,
            len(members),
        )
    existing = annotator_datasets(project, backoff)  # the usual case: only a new annotator needs one made
    datasets = {
        m.username: existing.get(m.username) or annotator_dataset(project, m, backoff) for m in members
    }
    wanted = set(item_ids)
    holders: dict[str, set[str]] = {}
    for name, handle in datasets.items():
        for record in fetch_records(handle, backoff, responses=False):
            if record.get("external_id") in wanted:
                holders.setdefault(record["external_id"], set()).add(name)
    send = assign(item_ids, holders, sorted(datasets), project.min_submitted, salt, answered_by)
    return Placement(datasets, holders, send)


def annotator_links(project: DatasetHandle, round_number: int | None = None) -> dict[str, str]:
    """{username: the link to their own queue} (one round's, when given), in priority order."""
    present = {m.username for m in roster(project)}  # a removed annotator's dataset stays, for pull only
    out = {}
    for name, handle in annotator_datasets(project).items():
        if name in present:
            out[name] = handle.annotation_url if round_number is None else handle.round_url(round_number)
    return out


def withdraw_from_annotators(
    project: DatasetHandle, item_ids: set[str], *, what: str, backoff: Backoff = DEFAULT_BACKOFF
) -> int:
    """Delete the records of `item_ids` from every annotator dataset; returns how many were deleted."""
    deleted = 0
    for handle in annotator_datasets(project, backoff).values():
        ids = [
            r["id"]
            for r in fetch_records(handle, backoff, responses=False)
            if r.get("external_id") in item_ids
        ]
        batches = delete_in_batches(
            handle,
            dict(zip(ids, ids, strict=True)),
            what=lambda _n, w=handle.workspace: f"{what} ({w})",
            backoff=backoff,
        )
        deleted += sum(len(chunk) for chunk in batches)
    return deleted


@dataclass
class BlindPush:
    """What a push into the annotators' datasets did."""

    items: int = 0  # items that got at least one new (or re-sent) record
    records: int = 0  # records Argilla accepted
    recreated: int = 0  # items recorded as pushed that no annotator dataset held any more
    batches: int = 0
    record_ids: dict[str, str] | None = None  # item id -> one of its record ids (what our DB records)
    extra_ids: dict[str, str] | None = None  # external id -> record id of the `extra` records sent


def push_to_annotators(
    project: DatasetHandle,
    items: Sequence,
    priority: dict[str, int],
    salt: str,
    *,
    include_pushed: bool = False,
    batch_size: int = 250,
    backoff: Backoff = DEFAULT_BACKOFF,
    answered_by: dict[str, set[str]] | None = None,
    extra: Callable[[str], list[tuple[Any, int]]] | None = None,
    excluded: Collection[str] = frozenset(),
) -> BlindPush:
    """Place the round's `items` (storage ItemContent, in priority order) in the annotators' datasets: new
    placements where an item has fewer than `min_submitted` annotators, and with `include_pushed` the records
    already placed again (their content updated). Placements happen per annotator, in priority order.
    `extra(username)` gives more (content, priority) records for an annotator who holds items of the round
    (their gold records, annotation.gold): sent in the same batches, in priority order."""
    from annotation.records import to_record
    from annotation.transfer import upsert_records

    by_id = {i.id: i for i in items}
    plan = place(project, [i.id for i in items], salt, backoff, answered_by, excluded)
    report = BlindPush(record_ids={}, extra_ids={})
    report.recreated = sum(1 for i in items if i.argilla_record_id is not None and not plan.holders.get(i.id))
    touched: set[str] = set()
    for name, handle in plan.datasets.items():
        ids = list(plan.send.get(name, []))
        held = [i for i, who in plan.holders.items() if name in who]
        if include_pushed:
            ids += held
        more = extra(name) if extra is not None and (ids or held) else []
        queue = sorted([(by_id[i], priority[i]) for i in ids] + more, key=lambda x: x[1])
        for start in range(0, len(queue), batch_size):
            batch = queue[start : start + batch_size]
            records = [to_record(c, rank, handle.layout, blind=True) for c, rank in batch]
            what = f"push {len(batch)} records to {name}'s dataset"
            got = upsert_records(handle, records, what=what, backoff=backoff)
            report.record_ids.update({k: v for k, v in got.items() if k in by_id})
            report.extra_ids.update({k: v for k, v in got.items() if k not in by_id})
            report.records += sum(1 for c, _ in batch if c.id in by_id)
            report.batches += 1
            touched.update(c.id for c, _ in batch if c.id in by_id)
    report.items = len(touched)
    if plan.send:
        _LOG.info(
            "placed %d records with %d annotators: %s",
            sum(len(v) for v in plan.send.values()),
            len(plan.send),
            ", ".join(f"{n}: {len(v)}" for n, v in sorted(plan.send.items())),
        )
    return report
