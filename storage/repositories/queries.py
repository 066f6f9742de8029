"""Read-side queries used by `status` and the operators' views. Take a Session; never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from storage.models import (
    AnnotationItem,
    DecisionLabel,
    Evaluation,
    Label,
    OperatorAction,
    Prompt,
    PromptScore,
    Round,
    SchedulerLock,
)
from storage.repositories import rounds as round_repo
from storage.repositories.candidates import scoring_costs
from storage.repositories.labels import latest_only
from storage.statuses import Choice, Metric


def pool_summary(session: Session) -> dict[str, Any]:
    by_split = dict(session.execute(select(Prompt.split, func.count()).group_by(Prompt.split)).all())
    # "excluded" = sampled and scored, but < 2 usable responses: done, just not rankable.
    scored = session.scalar(
        select(func.count(distinct(PromptScore.prompt_id))).where(
            PromptScore.metric.in_(Metric.scored_markers())
        )
    )
    train = by_split.get("train", 0)
    return {
        "prompts": by_split,
        "train_scored": scored or 0,
        "train_unscored": max(train - (scored or 0), 0),
    }


def rounds_summary(session: Session) -> list[dict[str, Any]]:
    counts = round_repo.round_counts(session)  # the per-round numbers report and experiment show too
    none = round_repo.RoundCounts()
    costs = scoring_costs(session)
    return [
        {
            "arm": r.arm,
            "number": r.number,
            "status": r.status,
            "reason": r.reason,
            "strategy": r.strategy,
            "budget": r.budget,
            # The units (loop.cli.status_view.UNITS): items sent for labelling, answered by enough annotators,
            # decided a/b (a tie is counted apart), and answers = one annotator's answer each.
            "items": counts.get(r.id, none).items,
            "answered": counts.get(r.id, none).answered,
            "decided": counts.get(r.id, none).decided_ab,
            "ties": counts.get(r.id, none).ties,
            "answers": counts.get(r.id, none).labels,
            "min_submitted": r.min_submitted,
            "policy_in": r.policy_in,
            "policy_out": r.policy_out,
            "scoring": costs.get(r.id),  # candidates drawn, prompts scored, samples, seconds (None: none yet)
        }
        for r in round_repo.all_rounds(session)
    ]


def evaluations_summary(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(Evaluation).order_by(Evaluation.created_at)).all()
    return [
        {
            "checkpoint": e.checkpoint_id,
            "reference": e.reference_id,
            "judge": e.judge,
            "n": e.n_prompts,
            "win_rate": e.win_rate,
            "ci": [e.ci_low, e.ci_high],
            # mean judge score of the policy's samples and its CI (None before evaluation_samples)
            "score_mean": (e.details or {}).get("policy_mean"),
            "score_ci": [(e.details or {}).get("policy_ci_low"), (e.details or {}).get("policy_ci_high")],
            "reference_score_mean": (e.details or {}).get("reference_mean"),
        }
        for e in rows
    ]


def selection_reward_models(session: Session) -> set[str]:
    """The reward models the pool was scored with for selection (PromptScore.reward_model)."""
    return set(session.scalars(select(PromptScore.reward_model).distinct()))


def recent_actions(session: Session, limit: int = 10) -> list[dict[str, Any]]:
    rows = session.scalars(select(OperatorAction).order_by(OperatorAction.id.desc()).limit(limit)).all()
    return [
        {"at": a.at.isoformat(), "actor": a.actor, "action": a.action, "payload": a.payload} for a in rows
    ]


def answers_per_annotator(session: Session) -> list[dict[str, Any]]:
    """[{username, submitted, discarded}] of every annotator with a label in OUR database (pulled answers,
    each counted once in its latest version; a removed Argilla user keeps their rows here), by username."""
    discarded = func.sum(case((Label.choice == Choice.DISCARD, 1), else_=0))
    rows = session.execute(
        select(Label.annotator, func.count(Label.id), discarded)
        .where(latest_only())
        .group_by(Label.annotator)
        .order_by(Label.annotator)
    ).all()
    return [
        {"username": who, "submitted": total - (gone or 0), "discarded": gone or 0}
        for who, total, gone in rows
    ]


def round_label_choices(session: Session) -> list[tuple[str, int, str, str]]:
    """(arm, round number, item id, choice) of the label versions each item's decision was made from (a closed
    round's are what it was decided on, whatever changed later): per-round annotator agreement for `status`."""
    stmt = (
        select(Round.arm, Round.number, Label.item_id, Label.choice)
        .join(DecisionLabel, DecisionLabel.label_id == Label.id)
        .join(AnnotationItem, AnnotationItem.id == Label.item_id)
        .join(Round, Round.id == AnnotationItem.round_id)
        .where(DecisionLabel.counted)  # an excluded annotator's answer is linked, not counted
    )
    return [tuple(row) for row in session.execute(stmt).all()]


def label_count(session: Session) -> int:
    """Stored answers, each counted once (its versions are one answer)."""
    return session.scalar(select(func.count(Label.id)).where(latest_only())) or 0


def scheduler_lease(session: Session, name: str = "scheduler") -> SchedulerLock | None:
    """The scheduler lease row (holder, heartbeat), or None when no scheduler holds one."""
    return session.get(SchedulerLock, name)
