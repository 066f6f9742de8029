"""Repository for the comparisons of human evaluations (storage.models.EvalComparison). Takes a Session;
never commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import Checkpoint, EvalComparison, Prompt
from storage.repositories.prompts import EVAL
from storage.upsert import upsert

HUMAN_JUDGE = "human"  # Evaluation.judge of a human evaluation (loop.evaluation.human.HUMAN)


def eval_prompts(session: Session, limit: int) -> list[tuple[str, str]]:
    """(id, text) of the first `limit` eval prompts by id: ids are content hashes, so this is a fixed sample
    that does not depend on ingest order, the same for every checkpoint."""
    stmt = select(Prompt.id, Prompt.text).where(Prompt.split == EVAL).order_by(Prompt.id).limit(limit)
    return [(pid, text) for pid, text in session.execute(stmt).all()]


def comparisons(session: Session, checkpoint_id: str, reference_id: str) -> list[EvalComparison]:
    """The comparisons of one (checkpoint, reference) evaluation, in prompt-id order."""
    return list(
        session.scalars(
            select(EvalComparison)
            .where(EvalComparison.checkpoint_id == checkpoint_id, EvalComparison.reference_id == reference_id)
            .order_by(EvalComparison.prompt_id)
        )
    )


def add_comparisons(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert comparisons; one that exists already (same checkpoint, reference, prompt) is left as it was."""
    return upsert(session, EvalComparison, rows, constraint="uq_eval_comparisons_key")


def prompt_texts_of(session: Session, prompt_ids: Sequence[str]) -> dict[str, str]:
    return dict(session.execute(select(Prompt.id, Prompt.text).where(Prompt.id.in_(list(prompt_ids)))).all())


def mark_pushed(session: Session, record_ids: Mapping[str, str]) -> None:
    """Store Argilla's record ids of pushed comparisons."""
    if record_ids:
        session.execute(
            update(EvalComparison),
            [{"id": cid, "argilla_record_id": rid} for cid, rid in record_ids.items()],
        )


def set_answers(session: Session, answers: Mapping[str, dict[str, str]]) -> int:
    """Replace the answers of the given comparisons (annotator -> policy|reference|tie|discard)."""
    if answers:
        session.execute(update(EvalComparison), [{"id": cid, "answers": a} for cid, a in answers.items()])
    return len(answers)


def comparisons_to_withdraw(session: Session) -> dict[tuple[str, str], dict[str, str]]:
    """{(checkpoint, reference): {comparison id: Argilla record id}} of the comparisons still in Argilla that
    leave the annotators' queue: every one whose checkpoint's round was cancelled (or failed), and those of
    human evaluations already stored (past their deadline) still short of their overlap, excluded annotators'
    answers not counted; so a withdrawal Argilla refused when the evaluation was stored is retried."""
    from storage.models import Checkpoint, Evaluation, Round
    from storage.repositories.exclusions import excluded_names
    from storage.statuses import RoundStatus

    in_argilla = select(EvalComparison).where(EvalComparison.argilla_record_id.is_not(None))
    cancelled = (
        in_argilla.join(Checkpoint, Checkpoint.id == EvalComparison.checkpoint_id)
        .join(Round, Round.id == Checkpoint.round_id)
        .where(Round.status.in_(RoundStatus.freeing_states()))
    )
    # EXISTS, not a join + DISTINCT: PostgreSQL has no equality for the json `answers` column DISTINCT compares.
    stored = in_argilla.where(
        select(Evaluation.id)
        .where(
            Evaluation.checkpoint_id == EvalComparison.checkpoint_id,
            Evaluation.reference_id == EvalComparison.reference_id,
            Evaluation.judge == HUMAN_JUDGE,
        )
        .exists()
    )
    excluded = excluded_names(session)
    todo = list(session.scalars(cancelled)) + [
        c
        for c in session.scalars(stored)
        if sum(who not in excluded for who in (c.answers or {})) < c.min_submitted
    ]
    out: dict[tuple[str, str], dict[str, str]] = {}
    for c in todo:
        out.setdefault((c.checkpoint_id, c.reference_id), {})[c.id] = c.argilla_record_id
    return out


def mark_withdrawn(session: Session, comparison_ids: Sequence[str]) -> None:
    """Forget the record ids of comparisons deleted from Argilla (their answers stay)."""
    if comparison_ids:
        session.execute(
            update(EvalComparison), [{"id": cid, "argilla_record_id": None} for cid in comparison_ids]
        )


def evaluation_answers(
    session: Session, round_id: int | None = None
) -> list[tuple[int, str, str, str, bool]]:
    """Every stored human-evaluation answer of a checkpoint some round trained (of one round or all), as
    (round id, comparison id, annotator, verdict, whether the checkpoint's response was shown as B)."""
    stmt = (
        select(Checkpoint.round_id, EvalComparison.id, EvalComparison.answers, EvalComparison.policy_side)
        .join(Checkpoint, Checkpoint.id == EvalComparison.checkpoint_id)
        .where(Checkpoint.round_id.is_not(None))
        .order_by(Checkpoint.round_id, EvalComparison.id)
    )
    if round_id is not None:
        stmt = stmt.where(Checkpoint.round_id == round_id)
    return [
        (rid, cid, annotator, verdict, side == "b")
        for rid, cid, answers, side in session.execute(stmt)
        for annotator, verdict in sorted((answers or {}).items())
    ]
