"""What both Ray pipelines (HF actors: loop.scoring.ray_engine; vLLM: loop.scoring.ray_vllm) share on the driver:
joining Ray, reading the batches to score, committing a finished batch with the local engine's writer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loop.scoring import ray_stages as stages
from loop.scoring.steps import (
    ScoreReport,
    ScoringError,
    check_score_args,
    commit_batch,
    finish_report,
    stored_items,
)
from storage.repositories.checkpoints import get_checkpoint
from storage.repositories.prompts import PromptRow, unscored_prompts
from storage.repositories.scores import generations_for

if TYPE_CHECKING:
    from loop.config import ScoringConfig
    from storage.db import UnitOfWork

RAY_INSTALL_HINT = 'engine = "ray" needs Ray: pip install "pvar-loop[ray]" (ray[data]==2.60.0)'


class RayEngineError(ScoringError):
    """The Ray engine cannot start or its cluster cannot run the configured actors; the message says which key."""


@dataclass(frozen=True)
class RayJob:
    """One Ray scoring run, as both Ray pipelines take it: what to score, how, and where its cost goes."""

    checkpoint_id: str
    reward_model: str
    k: int
    seed: int
    batch_size: int  # prompts per Ray batch and per committed batch
    limit: int | None = None
    prompts: Sequence[PromptRow] | None = None  # default: up to `limit` unscored train prompts, in id order
    candidates: Sequence[str] | None = None  # a round's candidate ids: what the report's `remaining` counts
    progress: bool = True
    round_id: int | None = None


def run_ray_job(uow: UnitOfWork, scoring: ScoringConfig, job: RayJob, drain, engine: str) -> ScoreReport:
    """Read the job's batches, join Ray and let `drain(ray, report, batches, rows)` stream and commit them;
    a Ray failure keeps the batches committed before it (a rerun scores the rest)."""
    check_score_args(job.k, job.batch_size, job.limit)
    start = time.perf_counter()
    report, batches, rows = read_batches(uow, job)
    if batches:
        with ray_session(scoring) as ray:
            try:
                drain(ray, report, batches, rows)
            except ray.exceptions.RayError as e:
                raise RayEngineError(f"the {engine} failed after {report.batches} batches: {e}") from e
    return finish_report(uow, report, start, job.candidates, engine)


def read_batches(uow: UnitOfWork, job: RayJob) -> tuple[ScoreReport, list[list[PromptRow]], list[list[dict]]]:
    """The job's prompts cut into committed batches, and their rows (ray_stages layout) with the stored
    samples."""
    report = ScoreReport(checkpoint_id=job.checkpoint_id, reward_model=job.reward_model, k=job.k)
    with uow() as session:
        if get_checkpoint(session, job.checkpoint_id) is None:
            raise ScoringError(f"checkpoint {job.checkpoint_id!r} is not in the database")
        todo = (
            list(job.prompts)
            if job.prompts is not None
            else unscored_prompts(session, job.checkpoint_id, job.reward_model, limit=job.limit)
        )
        size = job.batch_size
        batches = [todo[i : i + size] for i in range(0, len(todo), size)]
        rows = []
        for number, batch in enumerate(batches, 1):
            stored = generations_for(session, job.checkpoint_id, [p.id for p in batch])
            rows.append(stages.to_rows(number, batch, stored_items(batch, stored, job.k, report), job.k))
    return report, batches, rows


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
    if scoring.ray_address is not None:
        check_reachable(scoring.ray_address)
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


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse an address nothing listens on, at once: ray.init retries such an address for minutes.
    "auto" (and "local") are Ray's own lookups, left to it."""
    import socket

    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise RayEngineError(
            f'[scoring] ray_address = {address!r}: expected "auto", "host:port" or "ray://host:port"'
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RayEngineError(
            f"[scoring] ray_address = {address!r}: no Ray answers there ({e}); start the cluster or fix the key"
        ) from None


def check_resources(ray, scoring: ScoringConfig) -> None:
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


def commit_items(uow, job: RayJob, items, number: int, report: ScoreReport, rows=None) -> None:
    """Write one finished batch with the local engine's writer. Its cost in seconds: its generation and
    reward time summed over the actors that ran it (rows; none given: 0)."""
    before = report.counters()
    for item in items:
        new = [item.responses[i] for i in item.new]
        report.responses_generated += len(new)
        report.tokens_generated += sum(s.n_tokens for s in new)
        report.responses_rewarded += len(item.rewards)
    seconds = sum(stages.stage_seconds(rows)) if rows is not None else 0.0
    commit_batch(
        uow,
        number,
        job.checkpoint_id,
        job.reward_model,
        job.k,
        items,
        report,
        job.round_id,
        before=before,
        seconds=seconds,
    )
