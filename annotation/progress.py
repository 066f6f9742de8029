"""One round's progress in the shared dataset: Argilla's own progress bar counts every round pushed to it, so
an empty queue can read 87.5 %; this counts the records of one round, with the `round` metadata filter the
annotators use in the UI."""

from __future__ import annotations

from dataclasses import dataclass

from annotation.api import DEFAULT_BACKOFF, Backoff, request_json
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
    same filter annotators use in the UI)."""
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

    return RoundProgress(round_number, total=count(None), completed=count("completed"))


def drafts_by_annotator(dataset: DatasetHandle, *, backoff: Backoff = DEFAULT_BACKOFF) -> dict[str, int]:
    """Annotator -> records they saved as a draft in the dataset and have not submitted (Argilla's per-user
    progress). A draft is no answer, and it leaves that annotator's Pending queue: "no pending records"."""
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
    return {name: n for name, n in sorted(drafts.items()) if n}
