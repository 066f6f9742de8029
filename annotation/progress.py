"""One round's progress in the shared dataset: Argilla's own progress bar counts every round pushed to it, so
an empty queue can read 87.5 %; this counts the records of one round, with the `round` metadata filter the
annotators use in the UI."""

from __future__ import annotations

from dataclasses import dataclass

from annotation.api import DEFAULT_BACKOFF, Backoff, request_json
from annotation.blind import annotator_datasets, blind
from annotation.dataset import DatasetHandle


@dataclass(frozen=True)
class RoundProgress:
    """One round's records in Argilla: what the annotators' progress means for the current round (Argilla's
    own progress bar counts every round of the shared dataset)."""

    round_number: int
    total: int
    completed: int  # answered by the round's overlap (min_submitted)

    @property
    def pending(self) -> int:
        return self.total - self.completed

    @property
    def percent(self) -> float:
        return 100.0 * self.completed / self.total if self.total else 100.0


def round_progress(
    dataset: DatasetHandle, round_number: int, *, backoff: Backoff = DEFAULT_BACKOFF
) -> RoundProgress:
    """Completed and pending records of one round, counted by Argilla's search on the `round` metadata (the
    same filter annotators use in the UI). With blind overlap: the records of every annotator's own dataset,
    each completed by its one answer (an item counts once per annotator it went to)."""
    if blind(dataset):
        parts = [_count(d, round_number, backoff) for d in annotator_datasets(dataset, backoff).values()]
        total, completed = sum(t for t, _ in parts), sum(c for _, c in parts)
        return RoundProgress(round_number, total=total, completed=completed)
    total, completed = _count(dataset, round_number, backoff)
    return RoundProgress(round_number, total=total, completed=completed)


def _count(dataset: DatasetHandle, round_number: int, backoff: Backoff) -> tuple[int, int]:
    """(all, completed) records of one round in one dataset."""
    in_round = {
        "type": "range",
        "scope": {"entity": "metadata", "metadata_property": "round"},
        "ge": round_number,
        "le": round_number,
    }

    def count(status: str | None) -> int:
        filters = [in_round]
        if status is not None:
            scope = {"entity": "record", "property": "status"}
            filters.append({"type": "terms", "scope": scope, "values": [status]})
        data = request_json(
            dataset.http,
            "POST",
            f"/api/v1/datasets/{dataset.id}/records/search",
            params={"limit": 1, "offset": 0},
            json={"filters": {"and": filters}},
            what=f"count {status or 'all'} records of round {round_number}",
            backoff=backoff,
            idempotent=True,  # a search
        )
        return int(data.get("total") or 0)

    return count(None), count("completed")


def drafts_by_annotator(dataset: DatasetHandle, *, backoff: Backoff = DEFAULT_BACKOFF) -> dict[str, int]:
    """Annotator -> records they saved as a draft in the dataset and have not submitted (Argilla's per-user
    progress). A draft is no answer, and it leaves that annotator's Pending queue: "no pending records". With
    blind overlap the annotators' own datasets are counted too."""
    counts = _drafts(dataset, backoff)
    if blind(dataset):
        for own in annotator_datasets(dataset, backoff).values():
            for name, n in _drafts(own, backoff).items():
                counts[name] = counts.get(name, 0) + n
    return dict(sorted(counts.items()))


def _drafts(dataset: DatasetHandle, backoff: Backoff) -> dict[str, int]:
    data = request_json(
        dataset.http,
        "GET",
        f"/api/v1/datasets/{dataset.id}/users/progress",
        what="drafts per annotator",
        backoff=backoff,
    )
    drafts = {
        user["username"]: sum(
            int((user.get(part) or {}).get("draft") or 0) for part in ("completed", "pending")
        )
        for user in data.get("users") or []
    }
    return {name: n for name, n in drafts.items() if n}
