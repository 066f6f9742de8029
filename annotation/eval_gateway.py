"""Push the comparisons of a human evaluation to Argilla and pull the annotators' answers back.

The comparisons live in their own dataset (the preference dataset's settings, another name), so they never
mix with training labels. A record is the same pairwise question as a label record: the checkpoint's
response is shown on the side drawn for it (kept in our database only), so nothing an annotator can read
(fields, metadata, the external id, a content hash) tells which response is the new policy's. Records carry
our comparison id as external id: pushing again updates them, never duplicates.
"""

from __future__ import annotations

import logging

from annotation.api import DEFAULT_BACKOFF, Backoff
from annotation.dataset import DatasetHandle
from annotation.gateway import MAX_BATCH, fetch_records, upsert_records, usernames
from annotation.records import Rejected, parse_response, record_json
from storage.repositories import eval_comparisons as repo
from storage.statuses import Verdict

_LOG = logging.getLogger(__name__)


def push_comparisons(
    uow, dataset: DatasetHandle, checkpoint_id: str, reference_id: str, *, backoff: Backoff = DEFAULT_BACKOFF
) -> int:
    """Upsert every comparison of the evaluation as a record (all of them, each time: cheap for N eval
    prompts, and a record deleted in Argilla comes back). Returns the records sent."""
    with uow() as session:
        rows = repo.comparisons(session, checkpoint_id, reference_id)
        prompts = repo.prompt_texts_of(session, [c.prompt_id for c in rows])
        records = [
            record_json(
                c.id,
                prompts[c.prompt_id],
                c.policy_text,
                c.reference_text,
                c.policy_side == "b",
                {},
                dataset.layout,
            )
            for c in rows
        ]
    sent = 0
    for start in range(0, len(records), MAX_BATCH):
        batch = records[start : start + MAX_BATCH]
        what = f"push evaluation of {checkpoint_id}, records {start + 1}-{start + len(batch)}"
        record_ids = upsert_records(dataset, batch, what=what, backoff=backoff)
        with uow() as session:
            repo.mark_pushed(session, record_ids)
        sent += len(batch)
    _LOG.info("pushed %d comparison records of %s vs %s", sent, checkpoint_id, reference_id)
    return sent


def pull_comparisons(
    uow, dataset: DatasetHandle, checkpoint_id: str, reference_id: str, *, backoff: Backoff = DEFAULT_BACKOFF
) -> int:
    """Store every annotator's submitted or discarded answer (the side swap undone, the latest answer of each
    annotator kept) and return how many comparisons got new answers. Drafts are not answers; malformed
    responses are logged and skipped."""
    users = usernames(dataset, backoff)
    by_external = {r.get("external_id"): r for r in fetch_records(dataset, backoff)}
    with uow() as session:
        rows = repo.comparisons(session, checkpoint_id, reference_id)
        changed: dict[str, dict[str, str]] = {}
        for c in rows:
            answers = dict(c.answers or {})
            for response in (by_external.get(c.id) or {}).get("responses") or []:
                annotator = users.get(response.get("user_id"), f"user-{response.get('user_id')}")
                parsed = parse_response(response, swapped=c.policy_side == "b")
                if parsed is None:
                    continue
                if isinstance(parsed, Rejected):
                    _LOG.warning("evaluation record %s (%s): %s", c.id, annotator, parsed.reason)
                    continue
                answers[annotator] = Verdict.of(parsed.choice)  # our orientation: a = the checkpoint's
            if answers != (c.answers or {}):
                changed[c.id] = answers
        repo.set_answers(session, changed)
    _LOG.info("evaluation of %s: new answers on %d of %d comparisons", checkpoint_id, len(changed), len(rows))
    return len(changed)


def withdraw_comparisons(
    uow, dataset: DatasetHandle, records: dict[str, str], *, what: str, backoff: Backoff = DEFAULT_BACKOFF
) -> int:
    """Delete the records of comparisons ({comparison id: record id}) from Argilla and forget their record ids
    (their answers, pulled first by the caller, stay). Returns the records deleted."""
    from annotation.transfer import delete_in_batches

    for comparisons in delete_in_batches(
        dataset, records, what=lambda n: f"{what} ({n} records)", backoff=backoff
    ):
        with uow() as session:
            repo.mark_withdrawn(session, comparisons)
    return len(records)
