"""What an annotator's exclusion (or inclusion) does to the rounds that still collect: their items are decided
again from the stored answers without (or with) that annotator, and items left short of `min_submitted`
counted answers go back into the other annotators' queue.

Blind overlap (annotation.blind): placement leaves the excluded annotators off the roster, so a push places
the short items with others. Shared dataset: Argilla marks a record completed once `min_submitted` responses
are in, and hides it from the others' pending queue; deleting the excluded annotator's response there (it is
stored in our database first, and stays there and in export) makes Argilla count the record pending again.
"""

from __future__ import annotations

import logging

from annotation import answers
from annotation.aggregate import DEFAULT_MIN_CONFIDENCE, MAJORITY
from annotation.answers import PullReport
from annotation.api import DEFAULT_BACKOFF, Backoff, request
from storage.repositories import items as repo
from storage.repositories import labels as label_repo
from storage.repositories.exclusions import excluded_names
from storage.statuses import ItemStatus

_LOG = logging.getLogger(__name__)


def redecide(
    session,
    round_id: int | None,
    *,
    fallback: int,
    method: str = MAJORITY,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> PullReport:
    """Decide the items of the collecting rounds (of one, or all) again from the stored answers, leaving out
    the annotators excluded now; closed rounds keep theirs. No Argilla call."""
    report = PullReport()
    scope = answers.pull_scope(session, round_id, fallback, report)
    answers.aggregate(
        session,
        scope.items,
        scope.stored,
        scope.need,
        report,
        excluded=excluded_names(session),
        method=method,
        min_confidence=min_confidence,
    )
    return report


def release_shared(
    uow, dataset, round_id: int, present: set[str], *, backoff: Backoff = DEFAULT_BACKOFF
) -> int:
    """Shared dataset: delete the excluded annotators' responses (already stored) on the round's items that
    wait for answers again, so Argilla puts those records back in the other annotators' pending queue.
    `present`: the response ids the records of the pull just made still carry (PullReport.response_ids); a
    response released before is gone from them and is not asked for again. Returns the responses deleted."""
    with uow() as session:
        excluded = excluded_names(session)
        if not excluded:  # the usual case, on every collecting pull
            return 0
        waiting = {i.id for i in repo.pushed_items(session, round_id) if i.status == ItemStatus.PUSHED}
        stored = label_repo.labels_of(session, round_id).values()
        todo = [
            r for r in stored if r.item_id in waiting and r.annotator in excluded and r.response_id in present
        ]
    deleted = 0
    for row in todo:
        r = request(
            dataset.http,
            "DELETE",
            f"/api/v1/responses/{row.response_id}",
            what=f"release {row.annotator}'s response on item {row.item_id[:12]}",
            backoff=backoff,
            ok=(200, 204, 404),  # 404: deleted in the UI since the pull
        )
        deleted += r.status_code != 404
    if deleted:
        _LOG.info("released %d excluded annotators' responses on round id %d", deleted, round_id)
    return deleted
