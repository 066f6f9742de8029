"""The Ray engine of pool scoring (`[scoring] engine = "ray"`): the same prompts, samples and rows as the local
engine (loop.rounds.scoring.score_pool), computed by a Ray Data pipeline.

The driver reads the prompts to score (the list the local engine would meet, in id order) and their stored
samples, cuts them into the local engine's batches and streams them through generation and reward actors and a
PVar task (loop.scale.stages). Results come back in batch order (preserve_order) and each batch is committed
here with the local engine's writer, one transaction per batch: a killed driver leaves a prefix of whole batches
and a rerun meets the rest in the same batches, so nothing is lost, duplicated or drawn differently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from loop.rounds.scoring import (
    ScoreReport,
    ScoringError,
    _fault,
    _write_batch,
    check_score_args,
    stored_items,
)
from loop.scale import stages
from storage.repositories.checkpoints import get_checkpoint
from storage.repositories.prompts import PromptRow, count_unscored, unscored_prompts
from storage.repositories.scores import generations_for

if TYPE_CHECKING:
    from loop.config import Config, ScoringConfig
    from storage.db import UnitOfWork

log = logging.getLogger(__name__)

RAY_INSTALL_HINT = 'engine = "ray" needs Ray: pip install "pvar-loop[ray]" (ray[data]==2.60.0)'


class RayEngineError(ScoringError):
    """The Ray engine cannot start or its cluster cannot run the configured actors; the message says which key."""


def score_with_ray(
    cfg: Config,
    uow: UnitOfWork,
    *,
    model: str,
    reward_model: str,
    checkpoint_id: str,
    limit: int | None = None,
    progress: bool = True,
    round_id: int | None = None,
) -> ScoreReport:
    """score_with_config's Ray branch: the policy at `model` and `reward_model` loaded inside the actors
    (backend "vllm": vLLM engines through ray.data.llm, loop.scale.vllm_stages)."""
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
    common = {
        "checkpoint_id": checkpoint_id,
        "reward_model": reward_model,
        "k": g.k,
        "seed": g.seed,
        "batch_size": s.batch_size or g.batch_size,
        "limit": limit,
        "progress": progress,
        "round_id": round_id,
    }
    if g.backend == "vllm":
        from loop.scale.vllm_stages import score_pool_vllm

        return score_pool_vllm(uow, s, model, cfg.policy.dtype, knobs, scorer_kwargs, **common)
    generator_kwargs = {
        "backend": g.backend,
        "model": model,
        "dtype": cfg.policy.dtype,
        "batch_size": g.batch_size,
        "device": device,
        **knobs,
    }
    return score_pool_ray(uow, s, generator_kwargs, scorer_kwargs, **common)


def score_pool_ray(
    uow: UnitOfWork,
    scoring: ScoringConfig,
    generator_kwargs: dict[str, Any],
    scorer_kwargs: dict[str, Any],
    *,
    checkpoint_id: str,
    reward_model: str,
    k: int,
    seed: int,
    batch_size: int,
    limit: int | None = None,
    prompts: Sequence[PromptRow] | None = None,
    progress: bool = True,
    round_id: int | None = None,
) -> ScoreReport:
    """Score `prompts` (default: up to `limit` unscored train prompts, in id order) on Ray, committing every
    batch_size prompts here. generator_kwargs go to make_generator, scorer_kwargs to RewardScorer."""
    check_score_args(k, batch_size, limit)
    report = ScoreReport(checkpoint_id=checkpoint_id, reward_model=reward_model, k=k)
    start = time.perf_counter()
    with uow() as session:
        if get_checkpoint(session, checkpoint_id) is None:
            raise ScoringError(f"checkpoint {checkpoint_id!r} is not in the database")
        todo = (
            list(prompts)
            if prompts is not None
            else unscored_prompts(session, checkpoint_id, reward_model, limit=limit)
        )
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        rows = []
        for number, batch in enumerate(batches, 1):
            stored = generations_for(session, checkpoint_id, [p.id for p in batch])
            rows.append(stages.to_rows(number, batch, stored_items(batch, stored, k, report), k))
    if todo:
        with ray_session(scoring) as ray:
            _check_resources(ray, scoring)
            pipeline = _pipeline(ray, scoring, rows, generator_kwargs, scorer_kwargs, k, seed)
            try:
                _drain(pipeline, batches, uow, checkpoint_id, reward_model, k, report, round_id, progress)
            except ray.exceptions.RayError as e:
                # Batches committed before the failure stay; a rerun scores the rest.
                raise RayEngineError(
                    f"the Ray scoring pipeline failed after {report.batches} batches: {e}"
                ) from e
    report.elapsed_s = time.perf_counter() - start
    with uow() as session:
        report.remaining = count_unscored(session, checkpoint_id, reward_model)
    for prompt_id, reason in report.excluded:
        log.warning("prompt %s excluded: %s", prompt_id, reason)
    log.debug(
        "%s (Ray engine; generation %.1f s, reward %.1f s summed over actors, database %.1f s)",
        report.summary(),
        report.generate_s,
        report.reward_s,
        report.write_s,
    )
    return report


@contextmanager
def ray_session(scoring: ScoringConfig):
    """The ray module, connected: to an already initialised Ray (kept), to [scoring] ray_address, or to a Ray
    started here for this run (stopped afterwards)."""
    try:
        import ray
    except ImportError as e:
        raise RayEngineError(f"[scoring] {RAY_INSTALL_HINT} ({e})") from e
    if ray.is_initialized():
        yield ray
        return
    try:
        if scoring.ray_address is None:
            ray.init(num_cpus=scoring.local_cpus, include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=scoring.ray_address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"[scoring] ray_address = {scoring.ray_address!r}" if scoring.ray_address else "a local Ray"
        raise RayEngineError(f"cannot start or join {where}: {e}") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_resources(ray, scoring: ScoringConfig) -> None:
    """Refuse a pipeline whose actors cannot all be placed: Ray would wait for them forever."""
    have = ray.cluster_resources()
    need = {
        "CPU": 2 * scoring.workers * scoring.cpus_per_worker,
        "GPU": 2 * scoring.workers * scoring.gpus_per_worker,
    }
    for kind, amount in need.items():
        if amount > have.get(kind, 0.0):
            raise RayEngineError(
                f"[scoring] workers = {scoring.workers} with cpus_per_worker = {scoring.cpus_per_worker} and "
                f"gpus_per_worker = {scoring.gpus_per_worker} needs {amount:g} {kind} for its generation and "
                f"reward actors; the Ray cluster has {have.get(kind, 0.0):g}"
            )


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


def _drain(pipeline, batches, uow, checkpoint_id, rm, k, report, round_id, progress) -> None:
    """Commit each batch once all its rows are back, in batch order, with the local engine's writer."""
    from loop.progress import progress as progress_bar

    sizes = {number: len(batch) for number, batch in enumerate(batches, 1)}
    pending: dict[int, list[dict]] = {}
    next_batch = 1
    start = time.perf_counter()
    with progress_bar(sum(sizes.values()), "scoring (ray)", "prompt", enabled=progress) as bar:
        for frame in pipeline.iter_batches(batch_size=None, batch_format="pandas"):
            for row in frame.to_dict("records"):
                pending.setdefault(int(row[stages.BATCH]), []).append(row)
            while next_batch in pending and len(pending[next_batch]) == sizes[next_batch]:
                _commit(pending.pop(next_batch), next_batch, uow, checkpoint_id, rm, k, report, round_id)
                bar.update(sizes[next_batch])
                elapsed = time.perf_counter() - start
                bar.set_postfix(prompts_s=f"{report.prompts_done / elapsed:.2f}")
                next_batch += 1
    if next_batch <= len(batches):
        raise RayEngineError(f"the Ray pipeline returned {next_batch - 1} of {len(batches)} batches")


def _commit(rows, number, uow, checkpoint_id, rm, k, report, round_id) -> None:
    _, items = stages.from_rows(rows)
    generate_s, reward_s = stages.stage_seconds(rows)
    report.generate_s += generate_s
    report.reward_s += reward_s
    for item in items:
        new = [item.responses[i] for i in item.new]
        report.responses_generated += len(new)
        report.tokens_generated += sum(s.n_tokens for s in new)
        report.responses_rewarded += len(item.rewards)
    _fault("after-generate", number)
    t0 = time.perf_counter()
    with uow() as session:
        _write_batch(session, checkpoint_id, rm, k, items, report, round_id)
        session.flush()
        _fault("before-commit", number)
    report.write_s += time.perf_counter() - t0
    _fault("after-commit", number)
    report.batches = number
