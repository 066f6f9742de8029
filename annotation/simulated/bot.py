"""An annotator bot: a real Argilla annotator account that labels its own pending records with a judge.

It uses only what a human annotator's key may use: the per-user record search (its pending queue) and the
bulk response endpoint. Used by the demo and experiments, and by operators for a dry run of a round.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from annotation.api import DEFAULT_BACKOFF, TIMEOUT_S, AnnotationSyncError, Backoff, request_json
from annotation.dataset import PROMPT, QUESTION
from annotation.records import shown_pair
from annotation.simulated.judges import Judge
from storage.statuses import Choice

_LOG = logging.getLogger(__name__)
MAX_BULK = 100  # Argilla's limit per POST /api/v1/me/responses/bulk

# The annotator's queue as the UI builds it (records it has not answered that still need answers), plus its
# own drafts: a draft leaves the UI's Pending queue but is no answer, so the bot submits over it rather than
# leave it behind. In priority order (1 first), as the annotation link sorts it.
PENDING_QUERY = {
    "filters": {
        "and": [
            {
                "type": "terms",
                "scope": {"entity": "response", "property": "status"},
                "values": ["pending", "draft"],
            },
            {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]},
        ]
    },
    "sort": [{"scope": {"entity": "metadata", "metadata_property": "priority"}, "order": "asc"}],
}


@dataclass
class BotReport:
    username: str
    answers: Counter = field(default_factory=Counter)  # answer -> count (shown orientation)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def submitted(self) -> int:
        return sum(self.answers.values())


class AnnotatorBot:
    """Labels an annotator's pending records in a dataset. Use as a context manager (closes its client)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        judge: Judge,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self.judge = judge
        self.backoff = backoff
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers={"X-Argilla-Api-Key": api_key}, timeout=timeout
        )
        me = request_json(self.http, "GET", "/api/v1/me", what="bot sign-in", backoff=backoff)
        self.username, self.role = me["username"], me["role"]

    def __enter__(self) -> AnnotatorBot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def dataset_ids(self, name: str) -> list[str]:
        """The ids of the datasets named `name` this annotator can see: the project's shared one and, with
        blind overlap (annotation.blind), their own; the bot labels each."""
        data = request_json(
            self.http, "GET", "/api/v1/me/datasets", what="list datasets", backoff=self.backoff
        )
        # Only published ones: a dataset being created is listed as a draft before its metadata properties
        # (the priority the queue is sorted by) exist, and searching it then is a 422.
        return [d["id"] for d in data["items"] if d["name"] == name and d.get("status", "ready") == "ready"]

    def pending(self, dataset_id: str, limit: int = MAX_BULK) -> list[dict]:
        """Up to `limit` records in this annotator's queue and drafts (with their fields), priority first."""
        data = request_json(
            self.http,
            "POST",
            f"/api/v1/me/datasets/{dataset_id}/records/search",
            params={"limit": limit, "offset": 0},
            json=PENDING_QUERY,
            what=f"{self.username}: pending records",
            backoff=self.backoff,
            idempotent=True,  # a search
        )
        return [item["record"] for item in data["items"]]

    def _response(self, record: dict) -> tuple[str, dict]:
        fields = record.get("fields") or {}
        answer = self.judge(str(fields.get(PROMPT, "")), *shown_pair(fields))
        if answer not in tuple(Choice):
            raise ValueError(f"judge answered {answer!r}; expected one of {tuple(Choice)}")
        if answer == Choice.DISCARD:
            # `values` must be present, even empty: Argilla 2.8 fails (500) indexing a discard without it.
            return answer, {"record_id": record["id"], "status": "discarded", "values": {}}
        return answer, {
            "record_id": record["id"],
            "status": "submitted",
            "values": {QUESTION: {"value": answer}},
        }

    def run(self, dataset_id: str, *, batch_size: int = MAX_BULK, limit: int | None = None) -> BotReport:
        """Answer pending records until the queue is empty (or `limit` answers were given)."""
        if not 1 <= batch_size <= MAX_BULK:
            raise ValueError(f"batch_size must be in 1..{MAX_BULK}, got {batch_size}")
        t0 = time.perf_counter()
        report = BotReport(self.username)
        done: set[str] = set()
        while limit is None or report.submitted < limit:
            want = batch_size if limit is None else min(batch_size, limit - report.submitted)
            records = [r for r in self.pending(dataset_id, want) if r["id"] not in done]
            if not records:
                break
            answered = [self._response(r) for r in records]
            data = request_json(
                self.http,
                "POST",
                "/api/v1/me/responses/bulk",
                json={"items": [body for _, body in answered]},
                what=f"{self.username}: submit {len(answered)} responses",
                backoff=self.backoff,
                idempotent=True,  # an upsert: a record answered twice keeps one response
            )
            for (answer, body), result in zip(answered, data["items"], strict=True):
                done.add(body["record_id"])
                if result.get("error"):
                    report.errors.append(f"record {body['record_id']}: {result['error'].get('detail')}")
                else:
                    report.answers[answer] += 1
            if len(report.errors) >= len(done):
                raise AnnotationSyncError(
                    f"{self.username}: Argilla refused every response: {report.errors[:3]}"
                )
        report.seconds = time.perf_counter() - t0
        # An empty queue is the usual answer between rounds (the demo asks every 2 s): DEBUG.
        _LOG.log(
            logging.INFO if report.submitted else logging.DEBUG,
            "%s answered %d records %s",
            self.username,
            report.submitted,
            dict(report.answers),
        )
        return report
