"""The numbers behind `pvar-loop report`, read from the database: rounds, PVar pools, labels, agreement
and the eval curves per arm. Takes a Session and never writes; plots and HTML are built from its result.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.orm import Session

from annotation.aggregate import agreement
from loop.acquisition.strategies import Strategy
from loop.config import QualityConfig
from loop.evaluation.audit import audit_summary
from loop.quality.inputs import annotator_reliability
from loop.report.contents import CurvePoint, EvalPoint, PvarPool, ReportData, RoundPvar, RoundRow
from loop.report.verdict import verdict
from storage.models import Evaluation, Round
from storage.repositories import candidates as candidates_repo
from storage.repositories import evaluations, queries, reward_refreshes, scores
from storage.repositories import items as items_repo
from storage.repositories import labels as labels_repo
from storage.repositories import rounds as rounds_repo
from storage.statuses import Metric, is_production_arm

# Display order of arms: the method, the baseline, the controls, then anything else by name.
STRATEGY_ORDER = (Strategy.PVAR, Strategy.RANDOM, Strategy.LOW_PVAR, Strategy.REWARD_GAP, Strategy.FULL)


def collect(session: Session, quality: QualityConfig | None = None) -> ReportData:
    """Read everything the report shows. Empty tables give empty lists, never an error. Annotators are
    flagged against `quality` ([quality]; its defaults when None)."""
    rounds = [_round_row(r) for r in rounds_repo.all_rounds(session)]
    arms = _arm_strategies(rounds)
    rounds.sort(key=lambda r: (_arm_rank(r.arm, arms), r.number))
    _add_items_and_labels(session, rounds)
    costs = candidates_repo.scoring_costs(session)
    for r in rounds:
        r.scoring = costs.get(r.id)
    pools = _add_pvar(session, rounds)
    reference, judge, others = _add_evals(session, rounds)
    curves = _curves(session, rounds, reference, judge)
    data = ReportData(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        pool=queries.pool_summary(session),
        total_labels=queries.label_count(session),
        rounds=rounds,
        arms=arms,
        pools=pools,
        eval_reference=reference,
        eval_judge=judge,
        other_eval_pairs=others,
        curves=curves,
    )
    data.verdict = verdict(data)
    data.judge_warning = judge_warning(judge, queries.selection_reward_models(session))
    data.audit = audit_summary(items_repo.audit_outcomes(session))
    data.reward_refresh = reward_refreshes.refresh_rows(session)
    quality = QualityConfig() if quality is None else quality
    data.annotators = {**annotator_reliability(session, quality), "thresholds": quality.model_dump()}
    return data


def judge_warning(judge: str | None, selection_models: set[str]) -> str | None:
    """A line when the curves' judge is a reward model that also selected the labels: the policy is trained
    to please it, so its win rates flatter the policy."""
    model = judge.removeprefix("reward:") if judge and judge.startswith("reward:") else None
    if model is None or model not in selection_models:
        return None
    return (
        f"Warning: the win rates are judged by {model}, the reward model that selected the labels; the "
        'policy is trained to please it, so they flatter the policy ([evaluation] judge = "human", '
        '"verifier" or another reward model avoids this).'
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _round_row(r: Round) -> RoundRow:
    return RoundRow(
        id=r.id,
        arm=r.arm,
        number=r.number,
        status=r.status,
        reason=r.reason,
        strategy=r.strategy,
        seed=r.seed,
        budget=r.budget,
        policy_in=r.policy_in,
        policy_out=r.policy_out,
        created_at=_iso(r.created_at),
        finished_at=_iso(r.finished_at),
    )


def _arm_strategies(rounds: list[RoundRow]) -> dict[str, str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for r in rounds:
        seen[r.arm].add(r.strategy)
    return {arm: (s.pop() if len(s) == 1 else "mixed") for arm, s in seen.items()}


def _arm_rank(arm: str, arms: dict[str, str]) -> tuple[int, int, str]:
    strategy = arms.get(arm, "")
    rank = STRATEGY_ORDER.index(strategy) if strategy in STRATEGY_ORDER else len(STRATEGY_ORDER)
    return (0 if is_production_arm(arm) else 1, rank, arm)


def _add_items_and_labels(session: Session, rounds: list[RoundRow]) -> None:
    counts = rounds_repo.round_counts(session, [r.id for r in rounds])
    for r in rounds:
        c = counts.get(r.id, rounds_repo.RoundCounts())
        r.items, r.pushed, r.pending, r.labels = c.items, c.pushed, c.pending, c.labels
        r.decided, r.ties, r.undecided = c.decided_ab, c.ties, c.undecided  # decided: a/b, the DPO pairs
    votes: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    annotators: dict[int, set[str]] = defaultdict(set)
    for round_id, item_id, annotator, choice in labels_repo.label_choices(session):
        votes[round_id][item_id].append(choice)
        annotators[round_id].add(annotator)
    cum: dict[str, tuple[int, int]] = {}
    for r in rounds:  # sorted by arm, then number
        item_votes = list(votes.get(r.id, {}).values())
        r.annotators = len(annotators.get(r.id, ()))
        agr = agreement(item_votes)
        r.agreement_items, r.pairwise_agreement, r.fleiss_kappa = agr.items, agr.pairwise, agr.fleiss_kappa
        resolved = r.decided + r.ties + r.undecided
        if resolved:
            r.undecided_share = r.undecided / resolved
            r.tie_share = r.ties / resolved
        labels, decided = cum.get(r.arm, (0, 0))
        r.cum_labels, r.cum_decided = labels + r.labels, decided + r.decided
        cum[r.arm] = (r.cum_labels, r.cum_decided)


def _add_pvar(session: Session, rounds: list[RoundRow]) -> dict[str, PvarPool]:
    """Attach to each round the PVar pool of its input policy and where its selected prompts fall in it."""
    counts = scores.score_counts(session, Metric.PVAR)
    per_checkpoint: dict[str, Counter[str]] = defaultdict(Counter)
    per_round: dict[int, Counter[str]] = defaultdict(Counter)
    for checkpoint_id, reward_model, round_id, n in counts:
        per_checkpoint[checkpoint_id][reward_model] += n
        if round_id is not None:
            per_round[round_id][(checkpoint_id, reward_model)] += n
    item_prompts = items_repo.item_prompt_ids(session)

    pools: dict[str, PvarPool] = {}
    by_prompt: dict[str, dict[str, float]] = {}
    for r in rounds:
        if r.policy_in is None or not per_checkpoint.get(r.policy_in):
            continue
        # The reward model the round itself asked scores from, else the one that scored most of this policy.
        own = [rm for (ckpt, rm), _ in per_round[r.id].most_common() if ckpt == r.policy_in]
        reward_model = own[0] if own else _most_common(per_checkpoint[r.policy_in])
        key = f"{r.policy_in} | {reward_model}"
        if key not in pools:
            values_by_prompt = scores.score_values(session, r.policy_in, reward_model, Metric.PVAR)
            values = sorted(float(v) for v in values_by_prompt.values())
            pools[key] = PvarPool(
                key, r.policy_in, reward_model, values, float(np.mean(values)), float(np.median(values))
            )
            by_prompt[key] = values_by_prompt
        pool, pool_values = pools[key], by_prompt[key]
        prompts = item_prompts.get(r.id, [])
        selected = sorted(float(pool_values[p]) for p in prompts if p in pool_values)
        r.pvar = RoundPvar(
            pool=key,
            reward_model=reward_model,
            pool_size=len(pool.values),
            selected=selected,
            selected_missing=len(prompts) - len(selected),
            selected_mean=float(np.mean(selected)) if selected else None,
            pool_mean=pool.mean,
            selected_percentile=_mean_percentile(pool.values, selected),
        )
    return pools


def _most_common(counter: Counter[str]) -> str:
    # Ties broken by name so the report is the same on every run.
    return min(counter, key=lambda k: (-counter[k], k))


def _mean_percentile(sorted_pool: list[float], selected: list[float]) -> float | None:
    """Mean mid-rank percentile of `selected` within the pool (ties count half)."""
    if not selected or not sorted_pool:
        return None
    pool = np.asarray(sorted_pool)
    sel = np.asarray(selected)
    below = np.searchsorted(pool, sel, side="left")
    at_or_below = np.searchsorted(pool, sel, side="right")
    return float(np.mean((below + at_or_below) / 2 / len(pool)) * 100)


def _eval_point(e: Evaluation) -> EvalPoint:
    d = e.details or {}
    return EvalPoint(
        e.checkpoint_id,
        e.reference_id,
        e.judge,
        e.n_prompts,
        e.win_rate,
        e.ci_low,
        e.ci_high,
        score_mean=d.get("policy_mean"),
        score_low=d.get("policy_ci_low"),
        score_high=d.get("policy_ci_high"),
    )


def _add_evals(session: Session, rounds: list[RoundRow]) -> tuple[str | None, str | None, list[list[str]]]:
    """Pick the (reference, judge) most rounds were evaluated with, and attach that eval to each round."""
    checkpoints = {c for r in rounds for c in (r.policy_in, r.policy_out) if c}
    evals = [e for e in evaluations.all_evaluations(session) if e.checkpoint_id in checkpoints]
    pairs = Counter((e.reference_id, e.judge) for e in evals)
    if not pairs:
        return None, None, []
    reference, judge = min(pairs, key=lambda p: (-pairs[p], p))
    chosen = {
        e.checkpoint_id: _eval_point(e) for e in evals if (e.reference_id, e.judge) == (reference, judge)
    }
    for r in rounds:
        r.eval = chosen.get(r.policy_out) if r.policy_out else None
    others = sorted([list(p) for p in pairs if p != (reference, judge)])
    return reference, judge, others


def _curves(
    session: Session, rounds: list[RoundRow], reference: str | None, judge: str | None
) -> dict[str, list[CurvePoint]]:
    """Per arm: the starting policy at 0 labels (if evaluated), then each evaluated round's output policy."""
    if reference is None:
        return {}
    curves: dict[str, list[CurvePoint]] = {}
    for r in rounds:  # sorted by arm, then number
        first = r.arm not in curves
        points = curves.setdefault(r.arm, [])
        if first and r.policy_in:
            start = evaluations.find_evaluation(session, r.policy_in, reference, judge)
            if start is not None:
                points.append(CurvePoint(None, 0, 0, _eval_point(start)))
        if r.eval is not None:
            points.append(CurvePoint(r.number, r.cum_labels, r.cum_decided, r.eval))
    return {arm: pts for arm, pts in curves.items() if pts}
