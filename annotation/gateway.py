"""Push a round's items to Argilla and pull the annotators' answers back as labels and decisions.

Push: records go out in batches; each batch Argilla accepted is committed to our DB (record id, status
`pushed`) at once, and records carry our item id as external id, so a push interrupted anywhere (before,
during or after a batch) is finished by running it again: nothing lost, nothing duplicated. Our "pushed" flag
is checked against Argilla: an item whose record is gone there (deleted, or a stack whose data was lost) is
sent again and re-created under the same external id (our item id; Argilla gives it a new record UUID).
Pull: every annotator's submitted and discarded responses become labels (a/b mapped back through the swap
flag); each item of a round that still collects is then re-aggregated with the overlap (min_submitted) its
round started with. Once a round's collection has ended its decisions are the record of what was trained on:
answers arriving later are stored and reported (late labels), never re-decided. Anything malformed on the
Argilla side is reported and skipped.
Withdraw: the waiting records of a cancelled (or failed) round leave the annotators' queue: their answers so
far are pulled first (kept, counted as labels on cancelled rounds), then the records are deleted from Argilla.
Every push and pull withdraws what a cancel could not (Argilla unreachable then), before anything else, so a
prompt a later round selects again is never waiting in the queue twice.
Blind overlap (min_submitted >= 2, annotation.blind): records go to the annotators' own datasets instead of
the shared one; pull and withdraw read and clear those too, and pull hands the same list of records on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from annotation.aggregate import Agreement, agreement, decide
from annotation.api import DEFAULT_BACKOFF, AnnotationSyncError, Backoff, request, request_json
from annotation.blind import annotator_records, blind, push_to_annotators, withdraw_from_annotators
from annotation.dataset import DatasetHandle
from annotation.records import Answer, Rejected, parse_response, to_record
from annotation.transfer import DELETE_BATCH, MAX_BATCH, PAGE, fetch_records, upsert_records  # noqa: F401
from storage.repositories import items as repo
from storage.statuses import Choice, ItemStatus
from storage.types import as_utc

_LOG = logging.getLogger(__name__)


@dataclass
class PushReport:
    round_id: int
    items: int = 0  # items this push had to send
    pushed: int = 0  # records Argilla accepted (created or updated)
    repushed: int = 0  # of those, items that already had a record id (their record was updated)
    recreated: int = 0  # items recorded as pushed whose record was no longer in Argilla (sent again)
    withdrawn: int = 0  # waiting records of cancelled rounds deleted from Argilla first
    batches: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.pushed / self.seconds if self.seconds else 0.0


def push_items(
    uow,
    dataset: DatasetHandle,
    round_id: int,
    *,
    batch_size: int = 250,
    include_pushed: bool = False,
    order: Sequence[str] = (),
    backoff: Backoff = DEFAULT_BACKOFF,
    on_batch: Callable[[PushReport], None] | None = None,
) -> PushReport:
    """Send the round's unpushed items (every item with include_pushed) as records, batch by batch; items
    recorded as pushed whose record Argilla no longer has are sent too (`recreated`).

    `order` lists item ids in the order annotators should label them: each record carries its place
    (metadata `priority`, 1 first, over all the round's items, so a re-push keeps it) and records go out in
    that order. Items it does not list come after, by id.
    `on_batch` is called after each batch is committed to our DB (progress display, tests).
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be in 1..{MAX_BATCH}, got {batch_size}")
    t0 = time.perf_counter()
    withdrawn = withdraw_cancelled(uow, dataset, backoff=backoff).withdrawn
    with uow() as session:
        every = repo.items_to_push(session, round_id, include_pushed=True)
        todo = {i.id for i in repo.items_to_push(session, round_id)}
    priority = _priorities(order, [i.id for i in every])
    every.sort(key=lambda i: priority[i.id])
    if blind(dataset):
        return _push_blind(uow, dataset, round_id, every, priority, include_pushed, batch_size, backoff, t0)
    recorded = [i for i in every if i.argilla_record_id is not None]
    present = _external_ids(dataset, backoff) if recorded else set()
    gone = {i.id for i in recorded if i.id not in present}
    items = [i for i in every if include_pushed or i.id in todo or i.id in gone]
    report = PushReport(round_id, items=len(items), recreated=len(gone), withdrawn=withdrawn)
    if gone:
        _LOG.warning(
            "round %d: %d items recorded as pushed have no record in Argilla; re-creating them",
            round_id,
            len(gone),
        )
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        what = f"push round {round_id}, items {start + 1}-{start + len(batch)} of {len(items)}"
        try:
            records = [to_record(i, priority[i.id], dataset.layout) for i in batch]
            record_ids = upsert_records(dataset, records, what=what, backoff=backoff)
        except AnnotationSyncError as e:
            raise AnnotationSyncError(
                f"push of round {round_id} stopped: {report.pushed} of {len(items)} items are in Argilla and "
                f"recorded; run the push again to send the rest. Cause: {e}",
                e.status_code,
            ) from e
        with uow() as session:
            repo.mark_pushed(session, {i.id: str(record_ids[i.id]) for i in batch})
        report.pushed += len(batch)
        report.repushed += sum(1 for i in batch if i.argilla_record_id is not None)
        report.batches += 1
        report.seconds = time.perf_counter() - t0
        if on_batch is not None:
            on_batch(report)
    report.seconds = time.perf_counter() - t0
    _LOG.info(
        "pushed %d records of round %d (%d again, %d re-created) in %d batches, %.0f records/s",
        report.pushed,
        round_id,
        report.repushed,
        report.recreated,
        report.batches,
        report.per_second,
    )
    return report


def _push_blind(
    uow, dataset, round_id, every, priority, include_pushed, batch_size, backoff, t0
) -> PushReport:
    """push_items with overlap: records go to the annotators' own datasets (annotation.blind)."""
    answered_by: dict[str, set[str]] = {}
    with uow() as session:  # a removed annotator's stored answer still covers its item
        for item_id, annotator in repo.labels_of(session, round_id):
            answered_by.setdefault(item_id, set()).add(annotator)
    done = push_to_annotators(
        dataset,
        every,
        priority,
        f"round {round_id}",
        include_pushed=include_pushed,
        batch_size=batch_size,
        backoff=backoff,
        answered_by=answered_by,
    )
    with uow() as session:
        repo.mark_pushed(session, done.record_ids or {})
    report = PushReport(round_id, items=done.items, pushed=done.items, recreated=done.recreated)
    report.batches, report.seconds = done.batches, time.perf_counter() - t0
    report.repushed = sum(1 for i in every if i.id in (done.record_ids or {}) and i.argilla_record_id)
    _LOG.log(  # the scheduler re-places every collecting tick: quiet when nothing moved
        logging.INFO if done.records else logging.DEBUG,
        "pushed %d records of round %d to the annotators' datasets",
        done.records,
        round_id,
    )
    return report


def _priorities(order: Sequence[str], item_ids: list[str]) -> dict[str, int]:
    """{item id: 1-based rank}: the ids of `order` that are the round's first, then the rest by id."""
    known = set(item_ids)
    ranked = list(dict.fromkeys(i for i in order if i in known))
    ranked += sorted(known - set(ranked))
    return {item_id: rank for rank, item_id in enumerate(ranked, start=1)}


@dataclass
class WithdrawReport:
    rounds: list[int] = field(default_factory=list)  # ids of the cancelled rounds that had waiting records
    withdrawn: int = 0  # records deleted from Argilla
    labels: int = 0  # answers on them stored first (new or changed)


def withdraw_cancelled(uow, dataset: DatasetHandle, *, backoff: Backoff = DEFAULT_BACKOFF) -> WithdrawReport:
    """Take the waiting records of cancelled/failed rounds out of the annotators' queue: pull their answers
    (kept, never re-decided), then delete the records from Argilla and forget their record ids. Idempotent;
    an error leaves what is not deleted yet for the next call."""
    with uow() as session:
        todo = repo.records_to_withdraw(session)
    report = WithdrawReport(rounds=sorted(todo))
    path = f"/api/v1/datasets/{dataset.id}/records"
    for round_id, records in todo.items():
        pulled = pull_labels(uow, dataset, round_id, backoff=backoff)
        report.labels += pulled.new_labels + pulled.updated_labels
        # Blind overlap: the same items' records in the annotators' own datasets go first.
        what = f"withdraw records of cancelled round id {round_id}"
        withdraw_from_annotators(dataset, set(records), what=what, backoff=backoff)
        pairs = list(records.items())
        for start in range(0, len(pairs), DELETE_BATCH):
            chunk = pairs[start : start + DELETE_BATCH]
            request(
                dataset.http,
                "DELETE",
                path,
                params={"ids": ",".join(rid for _, rid in chunk)},
                what=f"withdraw {len(chunk)} records of cancelled round id {round_id}",
                backoff=backoff,
            )
            with uow() as session:
                repo.mark_withdrawn(session, [item_id for item_id, _ in chunk])
            report.withdrawn += len(chunk)
    if report.withdrawn:
        _LOG.info(
            "withdrew %d waiting records of cancelled rounds (ids %s) from Argilla; %d answers stored first",
            report.withdrawn,
            report.rounds,
            report.labels,
        )
    return report


@dataclass(frozen=True)
class Skipped:
    record: str  # our item id when known, else Argilla's record id
    annotator: str | None
    reason: str


@dataclass
class PullReport:
    records: int = 0  # records read from Argilla
    responses: int = 0  # responses read, all statuses
    drafts: int = 0  # saved as draft, not submitted: no answer, not stored as a label
    drafts_by: dict[str, int] = field(default_factory=dict)  # annotator -> drafts
    new_labels: int = 0
    updated_labels: int = 0
    unchanged_labels: int = 0
    items_changed: int = 0  # items whose status, decision or votes changed
    decided: int = 0  # of the items in scope whose round still collects, after this pull (ties included)
    ties: int = 0  # of those decided, decided tie
    undecided: int = 0
    waiting: int = 0
    closed_items: int = 0  # items in scope whose round's collection ended: decisions kept as they are
    late_labels: int = 0  # new or changed answers on those items (stored, not re-decided)
    cancelled_labels: int = 0  # of those, answers on items of cancelled rounds (not trained on or exported)
    skipped: list[Skipped] = field(default_factory=list)
    agreement: Agreement | None = None
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.new_labels or self.updated_labels or self.items_changed)


def usernames(dataset: DatasetHandle, backoff: Backoff = DEFAULT_BACKOFF) -> dict[str, str]:
    """Argilla user id -> username (who answered a response)."""
    data = request_json(dataset.http, "GET", "/api/v1/users", what="list users", backoff=backoff)
    return {u["id"]: u["username"] for u in data["items"]}


def _external_ids(dataset: DatasetHandle, backoff: Backoff) -> set[str]:
    """External ids (our item ids) of every record the dataset has now."""
    return {r.get("external_id") for r in fetch_records(dataset, backoff, responses=False)}


def _same(old: repo.LabelRow, new: repo.LabelRow) -> bool:
    # The stored timestamp reads back aware (storage.types.UTCDateTime); Argilla's are naive UTC.
    return (old.choice, old.rationale, _utc(old.submitted_at)) == (
        new.choice,
        new.rationale,
        _utc(new.submitted_at),
    )


def _utc(when: datetime | None) -> datetime | None:
    return None if when is None else as_utc(when)


def pull_labels(
    uow,
    dataset: DatasetHandle,
    round_id: int | None = None,
    *,
    min_submitted: int | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> PullReport:
    """Read every response of the dataset, upsert labels and re-aggregate the items (of one round or all)
    whose round still collects; the others keep their decisions (their new answers count as late labels).

    An item needs its round's min_submitted answers before it is decided or undecided: the value the round
    recorded when it started; a round without one records `min_submitted` (default: the dataset's overlap).
    Pulling again without new answers changes nothing.
    """
    t0 = time.perf_counter()
    fallback = dataset.min_submitted if min_submitted is None else min_submitted
    users = usernames(dataset, backoff)
    # The shared dataset's records and, with blind overlap, each annotator's own (an item once per annotator).
    records = fetch_records(dataset, backoff) + annotator_records(dataset, backoff)
    report = PullReport(records=len(records))
    with uow() as session:
        scope = _pull_scope(session, round_id, fallback, report)
        writes = _read_records(session, records, users, scope, report)
        repo.upsert_labels(session, writes)
        _aggregate(session, scope.items, scope.stored, scope.need, report)
    report.seconds = time.perf_counter() - t0
    _log_pull(report)
    return report


@dataclass
class _PullScope:
    """The items a pull reads answers for, what their rounds need and the labels stored so far."""

    items: dict  # item id -> pushed item (of one round or all)
    need: dict[int, int]  # round id -> its min_submitted, for the rounds in scope that still collect
    cancelled: set[int]  # ids of cancelled (or failed) rounds
    stored: dict  # (item id, annotator) -> LabelRow, updated as the pull reads answers


def _pull_scope(session, round_id: int | None, fallback: int, report: PullReport) -> _PullScope:
    """The pushed items in scope; a collecting round without a recorded overlap records `fallback`."""
    items = {i.id: i for i in repo.pushed_items(session, round_id)}
    in_scope = {i.round_id for i in items.values()}
    need = {
        rid: repo.record_min_submitted(session, rid, fallback)
        for rid in repo.collecting_rounds(session, round_id)
        if rid in in_scope
    }
    report.closed_items = sum(1 for i in items.values() if i.round_id not in need)
    return _PullScope(items, need, repo.freed_round_ids(session), repo.labels_of(session, round_id))


def _read_records(session, records: list[dict], users: dict[str, str], scope: _PullScope, report: PullReport):
    """The label rows to write: new or changed answers on the records of items in scope. Records unknown to
    the database and items whose record is gone are reported as skipped."""
    known: set[str] | None = None
    seen: set[str] = set()
    writes: list[repo.LabelRow] = []
    for record in records:
        ext = record.get("external_id")
        responses = record.get("responses") or []
        report.responses += len(responses)
        item = scope.items.get(ext)
        if item is None:
            known = repo.known_item_ids(session) if known is None else known
            if ext not in known:
                report.skipped.append(
                    Skipped(str(ext or record["id"]), None, "record unknown to our database")
                )
            continue  # else: an item of another round, or one not recorded as pushed yet
        seen.add(item.id)
        writes += _read_responses(item, responses, users, scope, report)
    for missing in sorted(set(scope.items) - seen):
        report.skipped.append(Skipped(missing, None, "record deleted from Argilla (labels kept)"))
    return writes


def _read_responses(
    item, responses: list[dict], users: dict[str, str], scope: _PullScope, report: PullReport
):
    """One item's new or changed labels (drafts and rejected answers counted, not stored)."""
    writes: list[repo.LabelRow] = []
    for response in responses:
        annotator = users.get(response.get("user_id"), f"user-{response.get('user_id')}")
        parsed = parse_response(response, item.swapped)
        if parsed is None:  # a draft: not an answer until submitted, but the operator must see it
            report.drafts += 1
            report.drafts_by[annotator] = report.drafts_by.get(annotator, 0) + 1
            continue
        if isinstance(parsed, Rejected):
            report.skipped.append(Skipped(item.id, annotator, parsed.reason))
            continue
        row = _label(item.id, annotator, parsed)
        old = scope.stored.get((item.id, annotator))
        if old is None:
            report.new_labels += 1
        elif _same(old, row):
            report.unchanged_labels += 1
            continue
        else:
            report.updated_labels += 1
        if item.round_id not in scope.need:
            report.late_labels += 1
            report.cancelled_labels += item.round_id in scope.cancelled
        writes.append(row)
        scope.stored[(item.id, annotator)] = row
    return writes


def _log_pull(report: PullReport) -> None:
    for s in report.skipped[:20]:
        _LOG.warning("pull skipped %s%s: %s", s.record, f" ({s.annotator})" if s.annotator else "", s.reason)
    if len(report.skipped) > 20:
        _LOG.warning("pull skipped %d more records (see the PullReport)", len(report.skipped) - 20)
    if report.drafts:  # every poll sees a draft again until it is submitted: loud only with other news
        _LOG.log(
            logging.INFO if report.changed or report.skipped else logging.DEBUG,
            "%d drafts not submitted (%s): not answers, not stored",
            report.drafts,
            ", ".join(f"{name}: {n}" for name, n in sorted(report.drafts_by.items())),
        )
    # A pull that found nothing new (most polls while annotators are away) is DEBUG: one INFO line per pull
    # that changed something.
    _LOG.log(
        logging.INFO if report.changed or report.skipped else logging.DEBUG,
        "pulled %d responses of %d records: %d new labels, %d updated (%d late), %d items changed, %d skipped",
        report.responses,
        report.records,
        report.new_labels,
        report.updated_labels,
        report.late_labels,
        report.items_changed,
        len(report.skipped),
    )


def _label(item_id: str, annotator: str, answer: Answer) -> repo.LabelRow:
    return repo.LabelRow(item_id, annotator, answer.choice, answer.rationale, answer.submitted_at)


def _aggregate(session, items: dict, stored: dict, need: dict[int, int], report: PullReport) -> None:
    """Majority vote per item of a collecting round (`need`: its min_submitted); write only the items whose
    outcome changed. Agreement covers every item in scope."""
    answers: dict[str, list[str]] = {}
    for (item_id, _annotator), row in stored.items():
        if item_id in items:
            answers.setdefault(item_id, []).append(row.choice)
    changes = []
    for item in items.values():
        if item.round_id not in need:
            continue  # its round's collection ended: the decision is what was trained on
        decision = decide(answers.get(item.id, []), need[item.round_id])
        status = decision.status.item_status
        if status == ItemStatus.DECIDED:
            report.decided += 1
            report.ties += decision.choice == Choice.TIE
        elif status == ItemStatus.UNDECIDED:
            report.undecided += 1
        else:
            report.waiting += 1
        if (status, decision.choice, decision.votes) != (item.status, item.decision, item.votes):
            changes.append((item.id, status, decision.choice, decision.votes))
    report.items_changed = repo.set_outcomes(session, changes)
    report.agreement = agreement(list(answers.values()))
