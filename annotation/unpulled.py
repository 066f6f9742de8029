"""Answers in Argilla that `pull` has not stored yet: what stopping or deleting a stack, or removing an
annotator's account, would put at risk."""

from __future__ import annotations

from dataclasses import dataclass

from annotation.api import DEFAULT_BACKOFF, Backoff, request_json
from annotation.blind import annotator_records
from annotation.dataset import DatasetHandle
from annotation.records import Answer, parse_response
from annotation.transfer import fetch_records
from storage.repositories import gold as gold_repo
from storage.repositories import items as repo
from storage.repositories import labels as label_repo
from storage.types import as_utc


@dataclass(frozen=True)
class AnswerCount:
    in_argilla: int  # submitted or discarded responses on our items
    unpulled: int  # of them: no stored label yet, or a newer one than the stored label


def unpulled_answers(uow, dataset: DatasetHandle, backoff: Backoff = DEFAULT_BACKOFF) -> int:
    """How many submitted or discarded responses on our items have no stored label yet, or a newer one
    than the stored label (drafts and records unknown to our database are not answers `pull` stores)."""
    return count_answers(uow, dataset, backoff=backoff).unpulled


def count_answers(
    uow, dataset: DatasetHandle, annotator: str | None = None, *, backoff: Backoff = DEFAULT_BACKOFF
) -> AnswerCount:
    """Answers on our items and gold records in the dataset (of one annotator, by username, or of everyone),
    and how many of them `pull` has not stored yet."""
    users = request_json(dataset.http, "GET", "/api/v1/users", what="list users", backoff=backoff)
    names = {u["id"]: u["username"] for u in users["items"]}
    records = fetch_records(dataset, backoff) + annotator_records(dataset, backoff)  # blind overlap's too
    with uow() as session:
        known = repo.known_item_ids(session)
        stored = {key: row.submitted_at for key, row in label_repo.labels_of(session).items()}
        # Answers to gold records are answers too (annotation.gold): pull stores them aside.
        gold = set(gold_repo.gold_records_by_id(session, {r.get("external_id") for r in records} - known))
        gold_stored = gold_repo.gold_answer_times(session) if gold else {}
    total = unpulled = 0
    for record in records:
        item_id = record.get("external_id")
        if item_id not in known and item_id not in gold:
            continue
        for response in record.get("responses") or []:
            answer = parse_response(response, swapped=False)  # only its status and time matter here
            if not isinstance(answer, Answer):
                continue
            user_id = str(response.get("user_id"))
            who = names.get(user_id, f"user-{user_id}")
            if annotator is not None and who != annotator:
                continue
            total += 1
            # Keyed by user id; an answer stored before 0011 is under its username until re-pulled.
            if item_id in gold:
                when = gold_stored.get((item_id, user_id), False)
            else:
                when = stored.get(
                    (item_id, user_id), stored.get((item_id, label_repo.legacy_key(who)), False)
                )
            if when is False or _utc(when) != _utc(answer.submitted_at):
                unpulled += 1
    return AnswerCount(total, unpulled)


def _utc(when):
    return None if when is None else as_utc(when)
