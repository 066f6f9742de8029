"""Record transfer with one Argilla dataset: bulk upsert by external id, listing every record, deleting records.

Shared by the gateway (the project's dataset), the per-annotator datasets of blind overlap (annotation.blind)
and human evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from annotation.api import DEFAULT_BACKOFF, AnnotationSyncError, Backoff, request, request_json
from annotation.dataset import DatasetHandle

MAX_BATCH = 500  # Argilla's limit per bulk upsert
PAGE = 1000  # Argilla's limit per record listing
DELETE_BATCH = 100  # Argilla's limit per record deletion


def upsert_records(
    dataset: DatasetHandle, records: list[dict], *, what: str, backoff: Backoff = DEFAULT_BACKOFF
) -> dict[str, str]:
    """One bulk upsert (at most MAX_BATCH records, keyed by external id) -> {external id: record id}."""
    data = request_json(
        dataset.http,
        "PUT",
        f"/api/v1/datasets/{dataset.id}/records/bulk",
        json={"items": records},
        what=what,
        backoff=backoff,
    )
    record_ids = {r.get("external_id"): str(r["id"]) for r in data.get("items", [])}
    missing = [r["external_id"] for r in records if r["external_id"] not in record_ids]
    if missing:
        raise AnnotationSyncError(f"{what}: Argilla did not return records for {len(missing)} items")
    return record_ids


def fetch_records(
    dataset: DatasetHandle, backoff: Backoff = DEFAULT_BACKOFF, page: int = PAGE, *, responses: bool = True
) -> list[dict]:
    """Every record of the dataset, with all users' responses unless `responses` is False (needs an owner or
    admin key)."""
    path = f"/api/v1/datasets/{dataset.id}/records"
    records: dict[str, dict] = {}
    # Argilla pages by offset over records ordered by insertion time; records of one bulk can tie, and
    # ties need not keep their order between requests (one record twice, another never). Dedupe by id,
    # and read again while fewer distinct records came back than the listing's total.
    for _ in range(3):
        offset, total = 0, None
        while total is None or offset < total:
            params = {"offset": offset, "limit": page} | ({"include": "responses"} if responses else {})
            data = request_json(
                dataset.http, "GET", path, params=params, what="list records", backoff=backoff
            )
            items, total = data["items"], data.get("total") or 0
            records.update((r["id"], r) for r in items)
            offset += len(items)
            if not items:
                break
        if len(records) >= (total or 0):
            break
    return list(records.values())


def delete_records(
    dataset: DatasetHandle, record_ids: list[str], *, what: str, backoff: Backoff = DEFAULT_BACKOFF
) -> None:
    """Delete records by Argilla record id (at most DELETE_BATCH)."""
    request(
        dataset.http,
        "DELETE",
        f"/api/v1/datasets/{dataset.id}/records",
        params={"ids": ",".join(record_ids)},
        what=what,
        backoff=backoff,
    )


def delete_in_batches(
    dataset: DatasetHandle,
    records: dict[str, str],
    *,
    what: Callable[[int], str],
    backoff: Backoff = DEFAULT_BACKOFF,
) -> Iterator[list[str]]:
    """Delete the records of {key: record id} DELETE_BATCH at a time, yielding each batch's keys once it is gone
    (the caller forgets them then, so an error leaves only what is still in Argilla for the next call)."""
    pairs = list(records.items())
    for start in range(0, len(pairs), DELETE_BATCH):
        chunk = pairs[start : start + DELETE_BATCH]
        delete_records(dataset, [rid for _, rid in chunk], what=what(len(chunk)), backoff=backoff)
        yield [key for key, _ in chunk]
