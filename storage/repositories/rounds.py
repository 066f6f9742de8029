"""Repository for rounds: lookups by arm/number/status and the per-round item and label numbers that `status`,
`report` and `experiment` all show. Takes a Session; never commits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import AnnotationItem, Label, Round
from storage.repositories.labels import latest_only
from storage.statuses import PRODUCTION_ARM, Choice, ItemStatus, RoundStatus


@dataclass(frozen=True)
class RoundCounts:
    """One round's annotation numbers: THE definition every view of a round reads."""

    items: int = 0
    pending: int = 0  # not yet in Argilla
    pushed: int = 0  # sent to the annotators: pushed, decided or undecided
    decided: int = 0  # a majority decision: a, b or tie
    decided_ab: int = 0  # decided a or b: the pairs DPO can train on
    ties: int = 0  # decided tie
    undecided: int = 0  # answered by enough annotators without a majority
    labels: int = 0  # annotator answers, discards included: the labelling effort

    @property
    def answered(self) -> int:
        """Items answered by enough annotators (decided or undecided): what collection waits for."""
        return self.decided + self.undecided


def round_counts(session: Session, round_ids: Sequence[int] | None = None) -> dict[int, RoundCounts]:
    """RoundCounts per round id (of `round_ids`, or of every round with items or labels)."""
    items = select(AnnotationItem.round_id, AnnotationItem.status, AnnotationItem.decision, func.count())
    labels = (
        select(AnnotationItem.round_id, func.count(Label.id))
        .join(Label, Label.item_id == AnnotationItem.id)
        .where(latest_only())  # an answer's versions are one answer
    )
    if round_ids is not None:
        items = items.where(AnnotationItem.round_id.in_(list(round_ids)))
        labels = labels.where(AnnotationItem.round_id.in_(list(round_ids)))
    by_round: dict[int, Counter[str]] = defaultdict(Counter)
    for round_id, status, decision, n in session.execute(
        items.group_by(AnnotationItem.round_id, AnnotationItem.status, AnnotationItem.decision)
    ):
        c = by_round[round_id]
        c["items"] += n
        c["pending"] += n if status == ItemStatus.PENDING else 0
        c["pushed"] += n if status.is_pushed else 0
        c["undecided"] += n if status == ItemStatus.UNDECIDED else 0
        if status == ItemStatus.DECIDED:
            c["decided"] += n
            c["decided_ab"] += n if decision in Choice.preferring() else 0
            c["ties"] += n if decision == Choice.TIE else 0
    label_counts = dict(session.execute(labels.group_by(AnnotationItem.round_id)).all())
    out = {
        round_id: RoundCounts(**by_round.get(round_id, {}), labels=label_counts.get(round_id, 0))
        for round_id in sorted(set(by_round) | set(label_counts))
    }
    return out


def add_round(
    session: Session,
    *,
    arm: str,
    number: int,
    budget: int,
    strategy: str,
    seed: int,
    policy_in: str | None,
) -> Round:
    """Open round `number` of `arm` as planned; returns the row with its id (flushed)."""
    rnd = Round(
        arm=arm,
        number=number,
        status=RoundStatus.PLANNED,
        budget=budget,
        strategy=strategy,
        seed=seed,
        policy_in=policy_in,
    )
    session.add(rnd)
    session.flush()
    return rnd


def all_rounds(session: Session, arm: str | None = None) -> list[Round]:
    """Rounds by arm, then number (of one arm, or of all)."""
    stmt = select(Round).order_by(Round.arm, Round.number)
    if arm is not None:
        stmt = stmt.where(Round.arm == arm)
    return list(session.scalars(stmt))


def round_by_number(session: Session, number: int, arm: str = PRODUCTION_ARM) -> Round | None:
    return session.scalar(select(Round).where(Round.arm == arm, Round.number == number))


def open_round(session: Session, arm: str = PRODUCTION_ARM) -> Round | None:
    """The arm's round that is not closed yet (there is at most one)."""
    return session.scalar(
        select(Round)
        .where(Round.arm == arm, Round.status.in_(RoundStatus.open_states()))
        .order_by(Round.number)
    )


def latest_labelled_round(session: Session, arm: str = PRODUCTION_ARM) -> Round | None:
    """The arm's highest-numbered round that has annotation items."""
    return session.scalar(
        select(Round)
        .where(Round.arm == arm, Round.id.in_(select(AnnotationItem.round_id)))
        .order_by(Round.number.desc())
        .limit(1)
    )


def latest_trained_policy(session: Session, arm: str = PRODUCTION_ARM) -> str | None:
    """policy_out of the arm's newest done round, if any."""
    return session.scalar(
        select(Round.policy_out)
        .where(Round.arm == arm, Round.status == RoundStatus.DONE, Round.policy_out.is_not(None))
        .order_by(Round.number.desc())
        .limit(1)
    )


def next_round_number(session: Session, arm: str = PRODUCTION_ARM) -> int:
    return (session.scalar(select(func.max(Round.number)).where(Round.arm == arm)) or 0) + 1


def round_ids_up_to(session: Session, number: int, arm: str = PRODUCTION_ARM) -> list[int]:
    """Ids of the arm's rounds numbered up to `number`, cancelled ones left out (cumulative training)."""
    return list(
        session.scalars(
            select(Round.id).where(
                Round.arm == arm, Round.number <= number, Round.status != RoundStatus.CANCELLED
            )
        )
    )


def item_status_counts(session: Session, round_id: int) -> dict[ItemStatus, int]:
    return dict(
        session.execute(
            select(AnnotationItem.status, func.count())
            .where(AnnotationItem.round_id == round_id)
            .group_by(AnnotationItem.status)
        ).all()
    )


def count_rounds(session: Session, status: RoundStatus) -> int:
    return session.scalar(select(func.count()).where(Round.status == status)) or 0


def first_reason(session: Session, statuses: Sequence[RoundStatus]) -> str | None:
    """The reason of some round in one of `statuses` (for a one-line diagnosis)."""
    return session.scalar(select(Round.reason).where(Round.status.in_(list(statuses))).limit(1))


def round_status(session: Session, number: int, arm: str = PRODUCTION_ARM) -> RoundStatus | None:
    return session.scalar(select(Round.status).where(Round.arm == arm, Round.number == number))


def record_queue_links(session: Session, round_id: int, links: dict[str, str]) -> None:
    """Where annotators label the round (annotation.dataset.queue_links), recorded at its push."""
    session.get(Round, round_id).queue_links = dict(links)


def links_ready(session: Session, arm: str = PRODUCTION_ARM) -> tuple[int, dict[str, str]] | None:
    """(number, links) of the arm's open round while annotators can label it (pushed or collecting)."""
    rnd = open_round(session, arm)
    if rnd is None or rnd.status not in READY_FOR_ANNOTATORS or not rnd.queue_links:
        return None
    return rnd.number, dict(rnd.queue_links)


READY_FOR_ANNOTATORS = (RoundStatus.PUSHED, RoundStatus.COLLECTING)
