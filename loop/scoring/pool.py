"""Score the unscored train pool (or the given prompts: a round's candidates, loop.rounds.candidates): K samples per prompt from the policy, a reward per sample, PVar per prompt.

Per batch: read (short transaction) -> generate and score OUTSIDE any transaction -> one transaction that
upserts the batch's generations, reward scores and prompt scores. A batch is therefore all-or-nothing: killed
at any moment (even SIGKILL), a rerun finds exactly the prompts that were not committed and meets them in the
same batches (prompts are read in id order), so it neither loses, duplicates nor redoes work. The steps live in
loop.scoring.steps, shared with the Ray engine (`[scoring] engine = "ray"`, loop.scoring.ray_engine).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loop.ml.generation import ResponseGenerator
from loop.scoring.steps import FAULT_ENV as FAULT_ENV
from loop.scoring.steps import (
    ResponseScorer,
    ScoreReport,
    ScoreRequest,
    ScoringError,
    check_score_args,
    commit_batch,
    finish_report,
    generate_and_score,
)
from storage.models import Round
from storage.repositories.checkpoints import ensure_initial_checkpoint, get_checkpoint
from storage.repositories.prompts import PromptRow, count_unscored, unscored_among, unscored_prompts
from storage.repositories.scores import generations_for
from storage.statuses import PRODUCTION_ARM, is_production_arm

if TYPE_CHECKING:
    from loop.config import Config
    from storage.db import UnitOfWork

log = logging.getLogger(__name__)


def score_pool(
    uow: UnitOfWork,
    generator: ResponseGenerator,
    scorer: ResponseScorer,
    request: ScoreRequest,
    *,
    k: int,
    seed: int,
    batch_size: int,
) -> ScoreReport:
    """Score up to `request.limit` unscored train prompts for (request.checkpoint_id, scorer.model_id),
    batch_size per commit: those among `request.prompt_ids` when given, else the whole pool. With a round_id,
    each committed batch's work is added to the round's scoring cost in the batch's own transaction."""
    checkpoint_id, limit, prompt_ids = request.checkpoint_id, request.limit, request.prompt_ids
    check_score_args(k, batch_size, limit)
    rm = scorer.model_id
    report = ScoreReport(checkpoint_id=checkpoint_id, reward_model=rm, k=k)
    pending: list[str] | None = None  # the unscored prompts asked for, by id; None: the whole pool
    with uow() as session:
        if get_checkpoint(session, checkpoint_id) is None:
            raise ScoringError(f"checkpoint {checkpoint_id!r} is not in the database")
        if prompt_ids is None:
            todo = count_unscored(session, checkpoint_id, rm)
        else:
            pending = [p.id for p in unscored_among(session, checkpoint_id, rm, prompt_ids)]
            todo = len(pending)
    todo = todo if limit is None else min(todo, limit)

    from loop.progress import progress as progress_bar

    start, cursor = time.perf_counter(), None
    with progress_bar(todo, "scoring", "prompt", enabled=request.progress) as bar:
        while todo > 0:
            t_batch, before = time.perf_counter(), report.counters()  # this batch's cost: the difference
            with uow() as session:
                batch = _next_batch(session, checkpoint_id, rm, cursor, min(batch_size, todo), pending)
                stored = generations_for(session, checkpoint_id, [p.id for p in batch])
            if not batch:
                break
            cursor = batch[-1].id  # keyset cursor: a prompt left for later is not met twice in one run
            scored = generate_and_score(batch, stored, generator, scorer, k, seed, report)
            commit_batch(
                uow,
                report.batches + 1,
                checkpoint_id,
                rm,
                k,
                scored,
                report,
                request.round_id,
                before=before,
                seconds=time.perf_counter() - t_batch,
            )
            todo -= len(batch)
            bar.update(len(batch))
            elapsed = time.perf_counter() - start
            bar.set_postfix(
                prompts_s=f"{report.prompts_done / elapsed:.2f}",
                tok_s=f"{report.tokens_generated / elapsed:.0f}",
            )
    return finish_report(uow, report, start, prompt_ids, "local engine")


def _next_batch(
    session, checkpoint_id: str, rm: str, cursor: str | None, n: int, pending: list[str] | None
) -> list[PromptRow]:
    """Up to n unscored prompts after `cursor` in id order: of the pool, or of `pending` (sorted ids), skipping
    any another process scored meanwhile."""
    if pending is None:
        return unscored_prompts(session, checkpoint_id, rm, after=cursor, limit=n)
    start = 0 if cursor is None else bisect.bisect_right(pending, cursor)
    while start < len(pending):
        batch = unscored_among(session, checkpoint_id, rm, pending[start : start + n])
        if batch:
            return batch
        start += n
    return []


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def reward_model_id(cfg: Config) -> str:
    """The id scores of the configured reward model are stored under (RewardScorer keeps the ref as given)."""
    return cfg.reward.model


def selection_reward_model(session, cfg: Config, arm: str = PRODUCTION_ARM) -> str:
    """The reward model production rounds score and select with: `[reward] model`, or, with `[reward] refresh`
    on, the newest kept refresh candidate that started from it (loop.rounds.reward_refresh; a different
    `[reward] model` starts over from itself). Experiment arms always use `[reward] model`."""
    from storage.repositories.reward_refreshes import kept_reward_model

    if cfg.reward.refresh == "off" or not is_production_arm(arm):
        return reward_model_id(cfg)
    return kept_reward_model(session, cfg.reward.model) or reward_model_id(cfg)


def score_with_config(
    cfg: Config,
    uow: UnitOfWork,
    limit: int | None = None,
    *,
    checkpoint_id: str | None = None,
    progress: bool = True,
    round_id: int | None = None,
    prompt_ids: Sequence[str] | None = None,
) -> ScoreReport:
    """Build generator and reward scorer from the config and score the pool (or only `prompt_ids`): the one path the CLI and the
    round runner share, on the [scoring] engine. Without checkpoint_id the initial policy (policy.model) is
    scored. The arguments travel down to the engine as one ScoreRequest."""
    from loop.ml.loading import check_causal_lm, check_reward_model
    from loop.ml.reward_backends import make_reward_scorer

    request = ScoreRequest(
        checkpoint_id=checkpoint_id, limit=limit, progress=progress, round_id=round_id, prompt_ids=prompt_ids
    )
    with uow() as session:
        rnd = session.get(Round, round_id) if round_id is not None else None
        reward_model = selection_reward_model(session, cfg, rnd.arm if rnd else PRODUCTION_ARM)
        if checkpoint_id is None:
            model = cfg.policy.model
            check_causal_lm(model, "[policy] model")
            request = dataclasses.replace(request, checkpoint_id=ensure_initial_checkpoint(session, model))
        else:
            checkpoint = get_checkpoint(session, checkpoint_id)
            if checkpoint is None:
                raise ScoringError(f"checkpoint {checkpoint_id!r} is not in the database")
            model = checkpoint.path
            check_causal_lm(model, f"checkpoint {checkpoint_id!r}")
        check_reward_model(reward_model, "[reward] model")
    if cfg.scoring.engine == "ray":
        from loop.scoring.ray_engine import score_with_ray

        return score_with_ray(cfg, uow, request, model=model, reward_model=reward_model)
    scorer = make_reward_scorer(
        cfg.reward.backend,
        reward_model,
        dtype=cfg.reward.dtype,
        max_length=cfg.reward.max_length,
        batch_size=cfg.reward.batch_size,
        device=_device(),
    )
    try:
        return score_with_scorer(cfg, uow, scorer, request, model=model)
    finally:
        scorer.close()


def score_with_scorer(
    cfg: Config,
    uow: UnitOfWork,
    scorer: ResponseScorer,
    request: ScoreRequest,
    *,
    model: str,
) -> ScoreReport:
    """Score the pool (or only the request's `prompt_ids`) under its checkpoint_id (weights at `model`) with
    any scorer, sampling with the [generation] settings; the generator is built, used and closed here (stored samples are reused). Always the
    local engine: a scorer object built here cannot be moved into Ray actors ([scoring] engine applies to
    score_with_config)."""
    from loop.ml.generation import make_generator

    g = cfg.generation
    generator = make_generator(
        g.backend,
        model=model,
        dtype=cfg.policy.dtype,
        temperature=g.temperature,
        top_p=g.top_p,
        max_new_tokens=g.max_new_tokens,
        batch_size=g.batch_size,
        device=_device(),
    )
    try:
        return score_pool(uow, generator, scorer, request, k=g.k, seed=g.seed, batch_size=g.batch_size)
    finally:
        generator.close()
