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

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from annotation import answers, gold
from annotation.aggregate import DEFAULT_MIN_CONFIDENCE, MAJORITY
from annotation.answers import PullReport, Skipped
from annotation.api import DEFAULT_BACKOFF, AnnotationSyncError, Backoff, request_json
from annotation.blind import annotator_records, blind, push_to_annotators, withdraw_from_annotators
from annotation.dataset import DatasetHandle
from annotation.records import to_record
from annotation.transfer import (  # noqa: F401  (re-exported)
    DELETE_BATCH,
    MAX_BATCH,
    PAGE,
    delete_in_batches,
    fetch_records,
    upsert_records,
)
from storage.repositories import gold as gold_repo
from storage.repositories import items as repo
from storage.repositories import labels as label_repo
from storage.repositories.exclusions import excluded_names

_LOG = logging.getLogger(__name__)


@dataclass
class PushReport:
    round_id: int
    items: int = 0  # items this push had to send
    pushed: int = 0  # records Argilla accepted (created or updated)
    repushed: int = 0  # of those, items that already had a record id (their record was updated)
    recreated: int = 0  # items recorded as pushed whose record was no longer in Argilla (sent again)
    withdrawn: int = 0  # waiting records of cancelled rounds deleted from Argilla first
    gold: int = 0  # gold records sent with them (annotation.gold; not in the other counts)
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
    gold_per_round: int = 0,
) -> PushReport:
    """Send the round's unpushed items (every item with include_pushed) as records, batch by batch; items
    recorded as pushed whose record Argilla no longer has are sent too (`recreated`).

    `order` lists item ids in the order annotators should label them: each record carries its place
    (metadata `priority`, 1 first, over all the round's items, so a re-push keeps it) and records go out in
    that order. Items it does not list come after, by id.
    `on_batch` is called after each batch is committed to our DB (progress display, tests).
    `gold_per_round` gold items go into the round's queue with them (annotation.gold), at seeded priorities
    the items leave free.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be in 1..{MAX_BATCH}, got {batch_size}")
    t0 = time.perf_counter()
    withdrawn = withdraw_cancelled(uow, dataset, backoff=backoff).withdrawn
    with uow() as session:
        every = repo.items_to_push(session, round_id, include_pushed=True)
        todo = {i.id for i in repo.items_to_push(session, round_id)}
    first_push = not any(i.argilla_record_id for i in every)
    reserved, gold_count = gold.reserved_priorities(
        uow, round_id, len(every), gold_per_round, blind=blind(dataset), first_push=first_push
    )
    priority = _priorities(order, [i.id for i in every], reserved)
    every.sort(key=lambda i: priority[i.id])
    if blind(dataset):
        return _push_blind(
            uow, dataset, round_id, every, priority, include_pushed, batch_size, backoff, t0, gold_count
        )
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
    # Gold records go out in the same batches, in priority order: nothing (not even insertion times) sets
    # them apart from the items around them.
    extra = gold.shared_todo(uow, round_id, include_pushed=include_pushed)
    if gold_count:  # an operator's source_id on the items only would single out the gold records
        items = [replace(i, source_id=None) for i in items]
    queue = sorted([(i, priority[i.id]) for i in items] + extra, key=lambda x: x[1])
    is_gold = {c.id for c, _ in extra}
    for start in range(0, len(queue), batch_size):
        batch = queue[start : start + batch_size]
        what = f"push round {round_id}, records {start + 1}-{start + len(batch)} of {len(queue)}"
        try:
            records = [to_record(c, rank, dataset.layout) for c, rank in batch]
            record_ids = upsert_records(dataset, records, what=what, backoff=backoff)
        except AnnotationSyncError as e:
            raise AnnotationSyncError(
                f"push of round {round_id} stopped: {report.pushed} of {len(items)} items are in Argilla and "
                f"recorded; run the push again to send the rest. Cause: {e}",
                e.status_code,
            ) from e
        sent = [c for c, _ in batch if c.id not in is_gold]
        with uow() as session:
            repo.mark_pushed(session, {i.id: str(record_ids[i.id]) for i in sent})
            gold_repo.mark_gold_pushed(
                session, {c.id: str(record_ids[c.id]) for c, _ in batch if c.id in is_gold}
            )
        report.pushed += len(sent)
        report.gold += len(batch) - len(sent)
        report.repushed += sum(1 for i in sent if i.argilla_record_id is not None)
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
    uow, dataset, round_id, every, priority, include_pushed, batch_size, backoff, t0, gold_per_round
) -> PushReport:
    """push_items with overlap: records go to the annotators' own datasets (annotation.blind)."""
    answered_by: dict[str, set[str]] = {}
    with uow() as session:  # a removed annotator's stored answer still covers its item; an excluded one's not
        excluded = excluded_names(session)
        for (item_id, _who), row in label_repo.labels_of(session, round_id).items():
            if row.annotator not in excluded:
                answered_by.setdefault(item_id, set()).add(row.annotator)  # placement goes by username
    done = push_to_annotators(
        dataset,
        every,
        priority,
        f"round {round_id}",
        include_pushed=include_pushed,
        batch_size=batch_size,
        backoff=backoff,
        answered_by=answered_by,
        extra=gold.blind_todo(uow, round_id, len(every), gold_per_round, include_pushed=include_pushed),
        excluded=excluded,
    )
    with uow() as session:
        repo.mark_pushed(session, done.record_ids or {})
        gold_repo.mark_gold_pushed(session, done.extra_ids or {})
    report = PushReport(round_id, items=done.items, pushed=done.items, recreated=done.recreated)
    report.batches, report.seconds = done.batches, time.perf_counter() - t0
    report.repushed = sum(1 for i in every if i.id in (done.record_ids or {}) and i.argilla_record_id)
    report.gold = len(done.extra_ids or {})
    _LOG.log(  # the scheduler re-places every collecting tick: quiet when nothing moved
        logging.INFO if done.records else logging.DEBUG,
        "pushed %d records of round %d to the annotators' datasets",
        done.records,
        round_id,
    )
    return report


def _priorities(
    order: Sequence[str], item_ids: list[str], reserved: set[int] = frozenset()
) -> dict[str, int]:
    """{item id: 1-based rank}: the ids of `order` that are the round's first, then the rest by id; the ranks
    in `reserved` (the round's gold records') are skipped."""
    known = set(item_ids)
    ranked = list(dict.fromkeys(i for i in order if i in known))
    ranked += sorted(known - set(ranked))
    free = (r for r in itertools.count(1) if r not in reserved)
    return dict(zip(ranked, free, strict=False))


@dataclass
class WithdrawReport:
    rounds: list[int] = field(default_factory=list)  # ids of the cancelled rounds that had waiting records
    withdrawn: int = 0  # records deleted from Argilla
    labels: int = 0  # answers on them stored first (new or changed)
    evaluation_records: int = 0  # records of those rounds' human evaluations deleted (loop.rounds.eval_queue)


def withdraw_cancelled(uow, dataset: DatasetHandle, *, backoff: Backoff = DEFAULT_BACKOFF) -> WithdrawReport:
    """Take the waiting records of cancelled/failed rounds out of the annotators' queue: pull their answers
    (kept, never re-decided), then delete the records from Argilla and forget their record ids; the unanswered
    gold records of every round that stopped collecting go too. Idempotent; an error leaves what is not
    deleted yet for the next call."""
    with uow() as session:
        todo = repo.records_to_withdraw(session)
    report = WithdrawReport(rounds=sorted(todo))
    for round_id, records in todo.items():
        pulled = pull_labels(uow, dataset, round_id, backoff=backoff)
        report.labels += pulled.new_labels + pulled.updated_labels
        # Blind overlap: the same items' records in the annotators' own datasets go first.
        what = f"withdraw records of cancelled round id {round_id}"
        withdraw_from_annotators(dataset, set(records), what=what, backoff=backoff)
        for items in delete_in_batches(
            dataset,
            records,
            what=lambda n, r=round_id: f"withdraw {n} records of cancelled round id {r}",
            backoff=backoff,
        ):
            with uow() as session:
                repo.mark_withdrawn(session, items)
            report.withdrawn += len(items)
    # Gold of every round that stopped collecting (done ones too, whose items all left the queue answered).
    gold.withdraw_idle_gold(uow, dataset, backoff=backoff)
    if report.withdrawn:
        _LOG.info(
            "withdrew %d waiting records of cancelled rounds (ids %s) from Argilla; %d answers stored first",
            report.withdrawn,
            report.rounds,
            report.labels,
        )
    return report


def usernames(dataset: DatasetHandle, backoff: Backoff = DEFAULT_BACKOFF) -> dict[str, str]:
    """Argilla user id -> username (who answered a response)."""
    data = request_json(dataset.http, "GET", "/api/v1/users", what="list users", backoff=backoff)
    return {u["id"]: u["username"] for u in data["items"]}


def _external_ids(dataset: DatasetHandle, backoff: Backoff) -> set[str]:
    """External ids (our item ids) of every record the dataset has now."""
    return {r.get("external_id") for r in fetch_records(dataset, backoff, responses=False)}


def pull_labels(
    uow,
    dataset: DatasetHandle,
    round_id: int | None = None,
    *,
    min_submitted: int | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    aggregation: str = MAJORITY,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> PullReport:
    """Read every response of the dataset, upsert labels and re-aggregate the items (of one round or all)
    whose round still collects; the others keep their decisions (their new answers count as late labels).

    An item needs its round's min_submitted answers before it is decided or undecided: the value the round
    recorded when it started; a round without one records `min_submitted` (default: the dataset's overlap).
    Pulling again without new answers changes nothing. Excluded annotators' answers are stored, not counted;
    `aggregation` is majority or dawid-skene (annotation.aggregate; below `min_confidence` undecided).
    """
    t0 = time.perf_counter()
    fallback = dataset.min_submitted if min_submitted is None else min_submitted
    users = usernames(dataset, backoff)
    # The shared dataset's records and, with blind overlap, each annotator's own (an item once per annotator).
    records = fetch_records(dataset, backoff) + annotator_records(dataset, backoff)
    gold_records, records = gold.split_gold(uow, records)  # measured aside, never labels or decisions
    report = PullReport(records=len(records))
    report.gold_answers = gold.store_answers(uow, gold_records, users)
    with uow() as session:
        scope = answers.pull_scope(session, round_id, fallback, report)
        writes = _read_records(session, records, users, scope, report)
        label_repo.claim_legacy_labels(session, scope.claims)
        label_repo.add_label_versions(session, writes)
        # Read back with row ids: a decision links the versions it was made from.
        latest = label_repo.labels_of(session, round_id) if writes or scope.claims else scope.stored
        excluded = excluded_names(session)
        answers.aggregate(
            session,
            scope.items,
            latest,
            scope.need,
            report,
            excluded=excluded,
            method=aggregation,
            min_confidence=min_confidence,
        )
        report.late = label_repo.late_answers(session, round_id)
    report.seconds = time.perf_counter() - t0
    _log_pull(report)
    return report


def _read_records(
    session, records: list[dict], users: dict[str, str], scope: answers.PullScope, report: PullReport
):
    """The label rows to write: new or changed answers on the records of items in scope. Records unknown to
    the database and items whose record is gone are reported as skipped."""
    known: set[str] | None = None
    seen: set[str] = set()
    writes: list[label_repo.LabelRow] = []
    for record in records:
        ext = record.get("external_id")
        responses = record.get("responses") or []
        report.responses += len(responses)
        report.response_ids.update(str(r["id"]) for r in responses if r.get("id"))
        item = scope.items.get(ext)
        if item is None:
            known = repo.known_item_ids(session) if known is None else known
            if ext not in known:
                report.skipped.append(
                    Skipped(str(ext or record["id"]), None, "record unknown to our database")
                )
            continue  # else: an item of another round, or one not recorded as pushed yet
        seen.add(item.id)
        writes += answers.read_responses(item, responses, users, scope, report)
    for missing in sorted(set(scope.items) - seen):
        report.skipped.append(Skipped(missing, None, "record deleted from Argilla (labels kept)"))
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
