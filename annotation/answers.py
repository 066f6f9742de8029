"""An annotator's response -> a stored answer version -> an item's decision (the read side of pull).

Answers are keyed by the Argilla user id and stored append-only (storage.repositories.labels): a response
that differs from its latest stored version becomes the next version. Items of rounds that still collect are
re-decided on the latest versions and linked to them; a closed round keeps its decisions and links, and what
arrives later is a late answer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from annotation.aggregate import (
    DAWID_SKENE,
    DEFAULT_MIN_CONFIDENCE,
    MAJORITY,
    Agreement,
    Decision,
    DecisionStatus,
    agreement,
    dawid_skene,
    decide,
    majority_confidence,
)
from annotation.records import Answer, Rejected, parse_response
from storage.repositories import items as repo
from storage.repositories import labels as label_repo
from storage.statuses import Choice, ItemStatus
from storage.types import as_utc


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
    new_labels: int = 0  # answers stored for the first time
    updated_labels: int = 0  # changed answers: stored as a new version, the earlier ones kept
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
    # ids of the responses the fetched records still carry (any status): what a release may delete
    response_ids: set[str] = field(default_factory=set)
    gold_answers: int = (
        0  # answers to gold records stored (new or changed; annotation.gold), in no count above
    )
    # every late answer in scope after the pull: the newest version of an answer a closed item's decision
    # did not use (this pull's late_labels and earlier ones)
    late: list[label_repo.LateAnswer] = field(default_factory=list)
    agreement: Agreement | None = None
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.new_labels or self.updated_labels or self.items_changed)


@dataclass
class PullScope:
    """The items a pull reads answers for, what their rounds need and the labels stored so far."""

    items: dict  # item id -> pushed item (of one round or all)
    need: dict[int, int]  # round id -> its min_submitted, for the rounds in scope that still collect
    cancelled: set[int]  # ids of cancelled (or failed) rounds
    stored: dict  # (item id, LabelRow.key) -> latest stored version, updated as the pull reads answers
    claims: list = field(default_factory=list)  # (item id, username, user id) of rows stored before 0011


def pull_scope(session, round_id: int | None, fallback: int, report: PullReport) -> PullScope:
    """The pushed items in scope; a collecting round without a recorded overlap records `fallback`."""
    items = {i.id: i for i in repo.pushed_items(session, round_id)}
    in_scope = {i.round_id for i in items.values()}
    need = {
        rid: repo.record_min_submitted(session, rid, fallback)
        for rid in repo.collecting_rounds(session, round_id)
        if rid in in_scope
    }
    report.closed_items = sum(1 for i in items.values() if i.round_id not in need)
    return PullScope(items, need, repo.freed_round_ids(session), label_repo.labels_of(session, round_id))


def read_responses(item, responses: list[dict], users: dict[str, str], scope: PullScope, report: PullReport):
    """One item's new or changed answers as new versions (drafts and rejected answers counted, not stored).
    An answer is keyed by the Argilla user id; a stored version is never replaced."""
    writes: list[label_repo.LabelRow] = []
    for response in responses:
        user_id = str(response.get("user_id"))
        annotator = users.get(user_id, f"user-{user_id}")
        parsed = parse_response(response, item.swapped)
        if parsed is None:  # a draft: not an answer until submitted, but the operator must see it
            report.drafts += 1
            report.drafts_by[annotator] = report.drafts_by.get(annotator, 0) + 1
            continue
        if isinstance(parsed, Rejected):
            report.skipped.append(Skipped(item.id, annotator, parsed.reason))
            continue
        old = stored_answer(item.id, user_id, annotator, scope)
        row = label(item.id, annotator, user_id, response.get("id"), parsed, old)
        if old is None:
            report.new_labels += 1
        elif same(old, row):
            report.unchanged_labels += 1
            continue
        else:
            report.updated_labels += 1
        if item.round_id not in scope.need:
            report.late_labels += 1
            report.cancelled_labels += item.round_id in scope.cancelled
        writes.append(row)
        scope.stored[(item.id, user_id)] = row
    return writes


def stored_answer(item_id: str, user_id: str, annotator: str, scope: PullScope):
    """The latest stored version of this user's answer to the item; a row stored before answers were keyed by
    user id, under the same username, is taken as theirs (and given their id)."""
    old = scope.stored.get((item_id, user_id))
    if old is None:
        old = scope.stored.pop((item_id, label_repo.legacy_key(annotator)), None)
        if old is not None:
            scope.claims.append((item_id, annotator, user_id))
            scope.stored[(item_id, user_id)] = old
    return old


def same(old: label_repo.LabelRow, new: label_repo.LabelRow) -> bool:
    # The stored timestamp reads back aware (storage.types.UTCDateTime); Argilla's are naive UTC.
    return (old.choice, old.rationale, utc(old.submitted_at)) == (
        new.choice,
        new.rationale,
        utc(new.submitted_at),
    )


def utc(when: datetime | None) -> datetime | None:
    return None if when is None else as_utc(when)


def label(
    item_id: str, annotator: str, user_id: str, response_id, answer: Answer, old: label_repo.LabelRow | None
) -> label_repo.LabelRow:
    """The answer as the next version after `old` (version 1 when there is none)."""
    return label_repo.LabelRow(
        item_id,
        annotator,
        answer.choice,
        answer.rationale,
        answer.submitted_at,
        annotator_id=user_id,
        version=1 if old is None else old.version + 1,
        response_id=None if response_id is None else str(response_id),
        answered_at=answer.answered_at,
    )


def aggregate(
    session,
    items: dict,
    stored: dict,
    need: dict[int, int],
    report: PullReport,
    *,
    excluded: Collection[str] = frozenset(),
    method: str = MAJORITY,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> None:
    """Decide each item of a collecting round (`need`: its min_submitted) over the latest version of each
    counted answer (`stored`, less the `excluded` annotators'), by `method`; write only the items whose
    outcome or versions used changed. Agreement covers every item in scope: a closed round's items with the
    versions they were decided on. Dawid-Skene leaves an item undecided below `min_confidence`."""
    answers: dict[str, list[str]] = {}
    for (item_id, _annotator), row in stored.items():
        if item_id in items and row.annotator not in excluded:
            answers.setdefault(item_id, []).append(row.choice)
    open_ids = [i.id for i in items.values() if i.round_id in need]
    posterior = _dawid_skene(session, excluded) if method == DAWID_SKENE and open_ids else {}
    changes = []
    for item in items.values():
        if item.round_id not in need:
            continue  # its round's collection ended: the decision is what was trained on
        decision = decide(answers.get(item.id, []), need[item.round_id])
        confidence = majority_confidence(decision)
        if method == DAWID_SKENE and decision.status is not DecisionStatus.WAITING:
            decision, confidence = _posterior_decision(decision, posterior.get(item.id), min_confidence)
        status = decision.status.item_status
        if status == ItemStatus.DECIDED:
            report.decided += 1
            report.ties += decision.choice == Choice.TIE
        elif status == ItemStatus.UNDECIDED:
            report.undecided += 1
        else:
            report.waiting += 1
        used = method if status != ItemStatus.PUSHED else None
        outcome = (status, decision.choice, decision.votes, used, confidence)
        if outcome != (item.status, item.decision, item.votes, item.decision_method, item.confidence):
            changes.append((item.id, *outcome))
    report.items_changed = repo.set_outcomes(session, changes)
    label_repo.link_latest(session, open_ids, stored, excluded)
    closed = [i.id for i in items.values() if i.round_id not in need]
    used_choices = label_repo.decided_choices(session, closed)
    answers.update({item_id: used_choices.get(item_id, []) for item_id in closed})
    report.agreement = agreement(list(answers.values()))


def _dawid_skene(session, excluded: Collection[str]) -> dict:
    """Dawid-Skene over every stored answer of the project (latest versions, excluded annotators left out):
    an open round gives each annotator a handful of items, too few to estimate their confusion matrix;
    their answers in earlier rounds say how they answer."""
    every = label_repo.labels_of(session)
    return dawid_skene((r.item_id, r.key, r.choice) for r in every.values() if r.annotator not in excluded)


def _posterior_decision(
    majority: Decision, posterior, min_confidence: float
) -> tuple[Decision, float | None]:
    """The item's decision by its Dawid-Skene posterior (votes stay the counts of the answers); only
    discards, or a top posterior below `min_confidence` (a near tie, e.g. one "a" against one "b" from
    annotators of like accuracy), leave it undecided, with its posterior kept as the confidence."""
    if posterior is None:
        return Decision(DecisionStatus.UNDECIDED, None, majority.votes), None
    choice, p = posterior
    if choice is None or p < min_confidence:
        return Decision(DecisionStatus.UNDECIDED, None, majority.votes), p
    return Decision(DecisionStatus.DECIDED, choice, majority.votes), p
