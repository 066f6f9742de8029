"""Evaluating a round's checkpoint: win rate against the initial policy on the eval split, judged by the
rule-based verifier or a reward model, stored once per (checkpoint, reference, judge)."""

from __future__ import annotations

import logging

from loop.config import Config
from loop.rounds.training import TrainingDataError, check_policies
from storage.db import UnitOfWork
from storage.models import Checkpoint, Evaluation
from storage.repositories.checkpoints import ensure_initial_checkpoint
from storage.repositories.evaluations import find_evaluation
from storage.repositories.prompts import EVAL, constraints_by_text, eval_prompt_texts

log = logging.getLogger(__name__)


def judge_for(cfg: Config, session):
    """(judge id, judge) for evaluation: the rule-based verifier (prompts carry constraints) or the RM."""
    if cfg.evaluation.judge == "verifier":
        from loop.evaluation.verifier import verify

        constraints = constraints_by_text(session, split=EVAL)
        missing = [t for t, c in constraints.items() if not c]
        if missing:
            raise TrainingDataError(
                f'[evaluation] judge = "verifier" needs metadata.constraints on every eval prompt; '
                f"{len(missing)} have none (e.g. {missing[0][:60]!r})"
            )
        return "verifier", lambda prompt, response: verify(response, constraints[prompt])
    from loop.ml.loading import check_reward_model
    from loop.ml.rewards import RewardScorer

    r = cfg.reward
    check_reward_model(r.model, "[reward] model")
    return f"reward:{r.model}", RewardScorer(
        r.model, dtype=r.dtype, max_length=r.max_length, batch_size=r.batch_size
    )


def evaluate_checkpoint(
    cfg: Config, uow: UnitOfWork, checkpoint_id: str, *, progress: bool = True
) -> Evaluation:
    """Win rate of a checkpoint against the initial policy on the eval split (stored once per judge). Progress:
    a bar on a terminal, a periodic log line otherwise (loop.progress)."""
    from loop.evaluation.win_rate import evaluate_policies

    with uow() as session:
        reference = ensure_initial_checkpoint(session, cfg.policy.model)
        ckpt = session.get(Checkpoint, checkpoint_id)
        if ckpt is None:
            raise TrainingDataError(f"no checkpoint {checkpoint_id!r}; see `pvar-loop status`")
        check_policies(
            {reference: session.get(Checkpoint, reference).path, checkpoint_id: ckpt.path}, reference
        )
        judge_id, judge = judge_for(cfg, session)
        existing = find_evaluation(session, checkpoint_id, reference, judge_id)
        if existing is not None:
            return existing
        prompts = eval_prompt_texts(session)
        ref_path, policy_path = session.get(Checkpoint, reference).path, ckpt.path
    if not prompts:
        raise TrainingDataError("no eval prompts: ingest some with `pvar-loop ingest FILE --split eval`")
    e, g = cfg.evaluation, cfg.generation
    result = evaluate_policies(
        prompts,
        policy_path,
        ref_path,
        judge,
        max_new_tokens=e.max_new_tokens,
        temperature=g.temperature,
        top_p=g.top_p,
        batch_size=g.batch_size,
        dtype=cfg.policy.dtype if cfg.policy.dtype != "auto" else "float32",
        seed=e.seed,
        n_bootstrap=e.n_bootstrap,
        backend=g.backend,
        progress=progress,
    )
    w = result.win_rate
    n = len(result.policy_scores)
    row = Evaluation(
        checkpoint_id=checkpoint_id,
        reference_id=reference,
        judge=judge_id,
        n_prompts=w.n,
        win_rate=w.value,
        ci_low=w.ci_low,
        ci_high=w.ci_high,
        details={
            "policy_mean": sum(result.policy_scores) / n,
            "reference_mean": sum(result.reference_scores) / n,
        },
    )
    with uow() as session:
        session.add(row)
    log.info(
        "evaluated %s vs %s: win rate %.3f [%.3f, %.3f] (%s)",
        checkpoint_id,
        reference,
        w.value,
        w.ci_low,
        w.ci_high,
        judge_id,
    )
    return row
