"""Evaluating a round's checkpoint against the initial policy on the eval split, judged by the rule-based
verifier, a reward model or the annotators (loop.rounds.human_evaluation), stored once per (checkpoint,
reference, judge) with every sampled response as evidence (evaluation_samples). The reference is sampled
and judged once per reference_key and its rows are reused by every later evaluation made the same way."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loop.config import JUDGES, Config
from loop.evaluation.human import HUMAN
from loop.rounds.training import TrainingDataError, check_policies
from loop.rounds.waits import Wait
from storage.db import UnitOfWork
from storage.models import Checkpoint, Evaluation, EvaluationSample
from storage.repositories.checkpoints import ensure_initial_checkpoint
from storage.repositories.evaluations import add_evaluation, add_samples, cached_reference, find_evaluation
from storage.repositories.prompts import EVAL, constraints_by_text, eval_prompts

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
    own = cfg.evaluation.judge not in JUDGES  # a reward model of its own, named by id or directory
    model, key = (cfg.evaluation.judge, "[evaluation] judge") if own else (r.model, "[reward] model")
    check_reward_model(model, key)
    return f"reward:{model}", RewardScorer(
        model, dtype=r.dtype, max_length=r.max_length, batch_size=r.batch_size
    )


def _weights_stamp(model: str) -> list:
    """Names, sizes and modification times of a local model's weight files (a model rewritten in place gets
    a new stamp); [] for a hub id."""
    path = Path(model)
    if not path.is_dir():
        return []
    files = sorted(f for pattern in ("*.safetensors", "*.bin") for f in path.glob(pattern))
    return [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def _sampling_knobs(cfg: Config) -> dict:
    """What evaluate_policies samples with, as evaluate_checkpoint passes it."""
    e, g = cfg.evaluation, cfg.generation
    return {
        "samples_per_prompt": e.samples_per_prompt,
        "max_new_tokens": e.max_new_tokens,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "batch_size": g.batch_size,
        "dtype": cfg.policy.dtype if cfg.policy.dtype != "auto" else "float32",
        "seed": e.seed,
        "backend": g.backend,
    }


def reference_key(
    cfg: Config, session, reference: str, reference_path: str, judge_id: str, prompt_ids: list[str]
) -> str:
    """Hash of everything the reference's judged samples depend on: the reference model (and its weights),
    the judge (and the RM's weights, or the eval prompts' constraints), the eval prompts in order and the
    sampling settings and seed. Equal keys: the stored reference rows can be reused."""
    if cfg.evaluation.judge == "verifier":
        judge_state = sorted(
            (t, json.dumps(c, sort_keys=True)) for t, c in constraints_by_text(session, split=EVAL).items()
        )
    else:  # the judging reward model (its own, or the selection RM) and how it scores
        r = cfg.reward
        model = cfg.evaluation.judge if cfg.evaluation.judge not in JUDGES else r.model
        judge_state = [_weights_stamp(model), r.dtype, r.max_length]
    parts = {
        "reference": reference,
        "reference_path": reference_path,
        "reference_weights": _weights_stamp(reference_path),
        "judge": judge_id,
        "judge_state": judge_state,
        "prompts": prompt_ids,
        "sampling": _sampling_knobs(cfg),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _side_from_rows(rows: list[EvaluationSample], prompt_ids: list[str], n: int):
    """The reference's SideSamples from stored rows, or None when they do not cover prompts x samples."""
    from loop.evaluation.win_rate import SideSamples

    by_key = {(r.prompt_id, r.sample_index): r for r in rows}
    if any((p, i) not in by_key for p in prompt_ids for i in range(n)):
        return None
    grid = [[by_key[(p, i)] for i in range(n)] for p in prompt_ids]
    return SideSamples(
        texts=[[r.text for r in row] for row in grid],
        n_tokens=[[r.n_tokens for r in row] for row in grid],
        scores=[[r.score for r in row] for row in grid],
        seeds=[r.seed for r in grid[0]],
    )


def _sample_rows(side: str, samples, prompt_ids: list[str]) -> list[dict]:
    return [
        {
            "prompt_id": pid,
            "side": side,
            "sample_index": i,
            "seed": samples.seeds[i],
            "text": samples.texts[p][i],
            "n_tokens": samples.n_tokens[p][i],
            "score": samples.scores[p][i],
        }
        for p, pid in enumerate(prompt_ids)
        for i in range(len(samples.seeds))
    ]


def evaluate_checkpoint(
    cfg: Config, uow: UnitOfWork, checkpoint_id: str, *, progress: bool = True
) -> Evaluation | Wait:
    """Win rate and mean judge score of a checkpoint against the initial policy on the eval split (stored
    once per judge, with its samples). A human evaluation not answered enough yet returns a Wait saying what
    it waits for instead. Progress: a bar on a terminal, a periodic log line otherwise (loop.progress)."""
    if cfg.judge_warning:
        log.warning("%s", cfg.judge_warning)
    if cfg.evaluation.judge == HUMAN:
        from loop.rounds.human_evaluation import evaluate_by_humans

        return evaluate_by_humans(cfg, uow, checkpoint_id)
    plan = _plan_evaluation(cfg, uow, checkpoint_id)
    if isinstance(plan, Evaluation):
        return plan
    result, diff = _judge_samples(cfg, plan, progress)
    row = _store_evaluation(uow, plan, _evaluation_fields(plan, result, diff), result)
    _log_evaluation(plan, result)
    return row


@dataclass(frozen=True)
class _EvaluationPlan:
    """What evaluate_checkpoint compares, how it judges, and the stored reference samples it can reuse."""

    checkpoint_id: str
    reference: str
    policy_path: str
    ref_path: str
    judge_id: str
    judge: Any
    prompts: list[tuple[str, str]]  # (prompt id, text) of the eval split, in order
    key: str  # reference_key: equal keys reuse the reference's judged samples
    knobs: dict
    ref_samples: Any  # the reference's SideSamples from stored rows, or None (sampled now)
    owner: int | None  # the Evaluation whose reference rows are reused, or None

    @property
    def prompt_ids(self) -> list[str]:
        return [pid for pid, _ in self.prompts]


def _plan_evaluation(cfg: Config, uow: UnitOfWork, checkpoint_id: str) -> _EvaluationPlan | Evaluation:
    """Check both policies and the judge; the stored Evaluation when this one was made already."""
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
        prompts = eval_prompts(session)
        ref_path, policy_path = session.get(Checkpoint, reference).path, ckpt.path
        prompt_ids = [pid for pid, _ in prompts]
        key = reference_key(cfg, session, reference, ref_path, judge_id, prompt_ids)
        cached = cached_reference(session, key)
        knobs = _sampling_knobs(cfg)
        ref_samples = _side_from_rows(cached[1], prompt_ids, knobs["samples_per_prompt"]) if cached else None
        owner = cached[0] if ref_samples is not None else None
    if not prompts:
        raise TrainingDataError("no eval prompts: ingest some with `pvar-loop ingest FILE --split eval`")
    return _EvaluationPlan(
        checkpoint_id,
        reference,
        policy_path,
        ref_path,
        judge_id,
        judge,
        prompts,
        key,
        knobs,
        ref_samples,
        owner,
    )


def _judge_samples(cfg: Config, plan: _EvaluationPlan, progress: bool):
    """Sample both policies (the reference only when not reused) and judge them; the paired difference of
    their mean scores over prompts."""
    from loop.evaluation.paired import paired_difference
    from loop.evaluation.win_rate import evaluate_policies

    result = evaluate_policies(
        [text for _, text in plan.prompts],
        plan.policy_path,
        plan.ref_path,
        plan.judge,
        n_bootstrap=cfg.evaluation.n_bootstrap,
        reference=plan.ref_samples,
        progress=progress,
        **plan.knobs,
    )
    prompt_ids = plan.prompt_ids
    diff = paired_difference(
        dict(zip(prompt_ids, result.policy.per_prompt_means, strict=True)),
        dict(zip(prompt_ids, result.reference.per_prompt_means, strict=True)),
        n_boot=cfg.evaluation.n_bootstrap,
        seed=cfg.evaluation.seed,
    )
    return result, diff


def _evaluation_fields(plan: _EvaluationPlan, result, diff) -> dict[str, Any]:
    w, pol, ref = result.win_rate, result.policy_score, result.reference_score
    return {
        "checkpoint_id": plan.checkpoint_id,
        "reference_id": plan.reference,
        "judge": plan.judge_id,
        "n_prompts": w.n,
        "win_rate": w.value,
        "ci_low": w.ci_low,
        "ci_high": w.ci_high,
        "reference_key": plan.key,
        "reference_samples_id": plan.owner,
        "details": {
            "samples_per_prompt": plan.knobs["samples_per_prompt"],
            "policy_mean": pol.mean,
            "policy_ci_low": pol.low,
            "policy_ci_high": pol.high,
            "reference_mean": ref.mean,
            "reference_ci_low": ref.low,
            "reference_ci_high": ref.high,
            # paired over prompts: policy minus reference mean judge score
            "mean_diff": diff.mean,
            "mean_diff_ci_low": diff.low,
            "mean_diff_ci_high": diff.high,
        },
    }


def _store_evaluation(uow: UnitOfWork, plan: _EvaluationPlan, fields: dict[str, Any], result) -> Evaluation:
    """The row and its samples (the reference's too, unless they are reused), in one transaction."""
    prompt_ids = plan.prompt_ids
    with uow() as session:
        row = add_evaluation(session, **fields)
        rows = _sample_rows("policy", result.policy, prompt_ids)
        if plan.owner is None:
            rows += _sample_rows("reference", result.reference, prompt_ids)
        add_samples(session, row.id, rows)
    return row


def _log_evaluation(plan: _EvaluationPlan, result) -> None:
    w, pol, ref = result.win_rate, result.policy_score, result.reference_score
    log.info(
        "evaluated %s vs %s: win rate %.3f [%.3f, %.3f], mean score %.3f [%.3f, %.3f] vs %.3f (%s, %d x %d%s)",
        plan.checkpoint_id,
        plan.reference,
        w.value,
        w.ci_low,
        w.ci_high,
        pol.mean,
        pol.low,
        pol.high,
        ref.mean,
        plan.judge_id,
        len(plan.prompts),
        plan.knobs["samples_per_prompt"],
        ", reference samples reused" if plan.owner is not None else "",
    )
