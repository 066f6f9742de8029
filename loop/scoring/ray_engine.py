"""The Ray engine of pool scoring (`[scoring] engine = "ray"`): the same prompts, samples and rows as the local
engine (loop.scoring.pool.score_pool), computed by a Ray Data pipeline.

The driver reads the prompts to score (the list the local engine would meet, in id order) and their stored
samples, cuts them into the local engine's batches and streams them through generation and reward actors and a
PVar task (loop.scoring.ray_stages). Results come back in batch order (preserve_order) and each batch is committed
here with the local engine's writer, one transaction per batch: a killed driver leaves a prefix of whole batches
and a rerun meets the rest in the same batches, so nothing is lost, duplicated or drawn differently.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from loop.scoring import ray_stages as stages
from loop.scoring.ray_driver import RayEngineError, RayJob, check_resources, commit_items, run_ray_job
from loop.scoring.steps import ScoreReport, ScoreRequest
from storage.repositories.prompts import unscored_among

if TYPE_CHECKING:
    from loop.config import Config, ScoringConfig
    from storage.db import UnitOfWork

log = logging.getLogger(__name__)


def score_with_ray(
    cfg: Config,
    uow: UnitOfWork,
    request: ScoreRequest,
    *,
    model: str,
    reward_model: str,
) -> ScoreReport:
    """score_with_config's Ray branch: the policy at `model` and `reward_model` loaded inside the actors
    (backend "vllm": vLLM engines through ray.data.llm, loop.scoring.ray_vllm); only the unscored among
    the request's `prompt_ids` (a round's candidates) when given."""
    prompts = None
    if request.prompt_ids is not None:
        with uow() as session:
            unscored = unscored_among(session, request.checkpoint_id, reward_model, request.prompt_ids)
        prompts = unscored[: request.limit]
    g, s = cfg.generation, cfg.scoring
    device = "cuda" if s.gpus_per_worker > 0 else "cpu"
    knobs = {"temperature": g.temperature, "top_p": g.top_p, "max_new_tokens": g.max_new_tokens}
    scorer_kwargs = {
        "model": reward_model,
        "dtype": cfg.reward.dtype,
        "max_length": cfg.reward.max_length,
        "batch_size": cfg.reward.batch_size,
        "device": device,
    }
    job = RayJob(
        checkpoint_id=request.checkpoint_id,
        reward_model=reward_model,
        k=g.k,
        seed=g.seed,
        batch_size=s.batch_size or g.batch_size,
        limit=request.limit,
        prompts=prompts,
        candidates=request.prompt_ids,
        progress=request.progress,
        round_id=request.round_id,
    )
    from loop.ml.generation import resolve_backend

    backend = resolve_backend(g.backend, model)
    if g.backend == "auto" and s.gpus_per_worker == 0:
        # ray.data.llm's vLLM stage wants GPU workers: on CPU workers auto keeps the transformers actors.
        backend = "transformers"
    if backend == "vllm":
        from loop.scoring.ray_vllm import score_pool_vllm

        return score_pool_vllm(uow, s, job, model, cfg.policy.dtype, knobs, scorer_kwargs)
    generator_kwargs = {
        "backend": backend,
        "model": model,
        "dtype": cfg.policy.dtype,
        "batch_size": g.batch_size,
        "device": device,
        **knobs,
    }
    return score_pool_ray(uow, s, job, generator_kwargs, scorer_kwargs)


def score_pool_ray(
    uow: UnitOfWork,
    scoring: ScoringConfig,
    job: RayJob,
    generator_kwargs: dict[str, Any],
    scorer_kwargs: dict[str, Any],
) -> ScoreReport:
    """Score the job's prompts on Ray, committing every job.batch_size prompts here. generator_kwargs go to
    make_generator, scorer_kwargs to RewardScorer."""

    def drain(ray, report: ScoreReport, batches, rows) -> None:
        check_resources(ray, scoring)
        pipeline = _pipeline(ray, scoring, rows, generator_kwargs, scorer_kwargs, job.k, job.seed)
        _drain(pipeline, batches, uow, job, report)

    return run_ray_job(uow, scoring, job, drain, "Ray scoring pipeline")


def _pipeline(ray, scoring: ScoringConfig, rows, generator_kwargs, scorer_kwargs, k: int, seed: int):
    """Generation actors -> reward actors -> PVar tasks; one dataset block per committed batch."""
    import pandas as pd

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # batches come back in order: a kill leaves a prefix
    ctx.enable_progress_bars = False  # the driver shows its own bar over committed prompts
    ctx.print_on_execution_start = False
    actor = {
        "batch_size": None,  # a whole block, i.e. one committed batch, per call
        "batch_format": "pandas",
        "compute": ray.data.ActorPoolStrategy(size=scoring.workers),
        "num_cpus": scoring.cpus_per_worker,
        "num_gpus": scoring.gpus_per_worker,
    }
    ds = ray.data.from_pandas([pd.DataFrame(batch_rows) for batch_rows in rows])
    ds = ds.map_batches(
        stages.GenerateStage,
        fn_constructor_kwargs={
            "generator_kwargs": generator_kwargs,
            "k": k,
            "seed": seed,
            "cpus": scoring.cpus_per_worker,
        },
        **actor,
    )
    ds = ds.map_batches(
        stages.RewardStage,
        fn_constructor_kwargs={"scorer_kwargs": scorer_kwargs, "k": k, "cpus": scoring.cpus_per_worker},
        **actor,
    )
    # PVar is a few flops per prompt: a zero-CPU task, so it never waits behind the actors' reservations.
    return ds.map_batches(
        stages.pvar_stage, fn_kwargs={"k": k}, batch_size=None, batch_format="pandas", num_cpus=0
    )


def _drain(pipeline, batches, uow, job: RayJob, report: ScoreReport) -> None:
    """Commit each batch once all its rows are back, in batch order, with the local engine's writer."""
    from loop.progress import progress as progress_bar

    sizes = {number: len(batch) for number, batch in enumerate(batches, 1)}
    pending: dict[int, list[dict]] = {}
    next_batch = 1
    start = time.perf_counter()
    with progress_bar(sum(sizes.values()), "scoring (ray)", "prompt", enabled=job.progress) as bar:
        for frame in pipeline.iter_batches(batch_size=None, batch_format="pandas"):
            for row in frame.to_dict("records"):
                pending.setdefault(int(row[stages.BATCH]), []).append(row)
            while next_batch in pending and len(pending[next_batch]) == sizes[next_batch]:
                rows = pending.pop(next_batch)
                _, items = stages.from_rows(rows)
                generate_s, reward_s = stages.stage_seconds(rows)
                report.generate_s += generate_s
                report.reward_s += reward_s
                commit_items(uow, job, items, next_batch, report, rows)
                bar.update(sizes[next_batch])
                elapsed = time.perf_counter() - start
                bar.set_postfix(prompts_s=f"{report.prompts_done / elapsed:.2f}")
                next_batch += 1
    if next_batch <= len(batches):
        raise RayEngineError(f"the Ray pipeline returned {next_batch - 1} of {len(batches)} batches")
