"""Retraining a round's policy with DPO, wired to the database: which labels feed it, where the checkpoint goes,
and how the run is recorded so that re-running it on the same data is a no-op."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict

from sqlalchemy.orm import Session

from loop.config import Config
from loop.rounds.dpo_margins import record_margins
from storage.db import UnitOfWork
from storage.errors import PvarLoopError
from storage.models import Checkpoint, Round
from storage.repositories.checkpoints import ensure_initial_checkpoint, put_trained_checkpoint
from storage.repositories.items import DecidedPair, decided_items
from storage.repositories.rounds import item_status_counts, round_ids_up_to
from storage.repositories.training_runs import add_finished_run, finished_run
from storage.statuses import RoundStatus

log = logging.getLogger(__name__)


class TrainingDataError(PvarLoopError, ValueError):
    """The labels asked for cannot be trained on; nothing was written."""


class NoTrainingSignal(TrainingDataError):
    """Every label is a tie, undecided or discarded: DPO has nothing to learn from."""


def training_settings(cfg: Config):
    """The DPO settings of [training] (loop.ml.dpo.TrainingSettings mirrors that section's keys)."""
    from loop.ml.settings import TrainingSettings

    return TrainingSettings.from_config(cfg.training)


def check_policies(paths: dict[str, str], initial: str) -> None:
    """Refuse, before anything is sampled or trained, a checkpoint (id -> path) without a causal-LM head; the
    error names `[policy] model` for the initial policy and the checkpoint id for the others."""
    from loop.ml.loading import check_causal_lm

    for checkpoint_id, path in paths.items():
        check_causal_lm(
            path, "[policy] model" if checkpoint_id == initial else f"checkpoint {checkpoint_id!r}"
        )


def _training_rounds(session, cfg: Config, rnd: Round) -> list[int]:
    if not cfg.training.cumulative:
        return [rnd.id]
    return round_ids_up_to(session, rnd.number, rnd.arm)


def _check_collected(session, rnd: Round) -> None:
    """Refuse a round whose collection is still open and has items without a decision."""
    if rnd.status not in (
        RoundStatus.PUSHED,
        RoundStatus.COLLECTING,
        RoundStatus.SCORED,
        RoundStatus.PLANNED,
    ):
        return
    open_items = sum(n for status, n in item_status_counts(session, rnd.id).items() if not status.is_settled)
    if open_items:
        raise TrainingDataError(
            f"round {rnd.number} is still {rnd.status}: {open_items} of its items have no decided label yet; "
            "wait for the annotators (or cancel the round); nothing was written"
        )


def _run_dpo(cfg: Config, prefs, policy_dir: str, reference_dir: str, output_dir, settings):
    """DPO in this process or, with [training] launcher = "accelerate", under `accelerate launch`; both publish
    the same checkpoint into output_dir and return the same TrainResult."""
    kwargs = dict(
        policy_dir=policy_dir, reference_dir=reference_dir, output_dir=output_dir, settings=settings
    )
    if cfg.training.launcher == "accelerate":
        from loop.ml.dpo_launch import train_dpo_accelerate

        return train_dpo_accelerate(
            prefs,
            accelerate_config=cfg.training.accelerate_config,
            num_processes=cfg.training.num_processes,
            **kwargs,
        )
    from loop.ml.dpo import train_dpo
    from loop.ml.loading import release_memory
    from loop.ml.vllm_engine import close_all_engines

    close_all_engines()  # the sampling engines' memory and process group go back before DPO starts
    try:
        return train_dpo(prefs, **kwargs)
    finally:
        release_memory()  # the trainer's models and activations, before evaluation opens an engine


def train_round(
    cfg: Config,
    uow: UnitOfWork,
    round_id: int,
    *,
    select_pairs: Callable[[Session, Round, list[DecidedPair]], list[DecidedPair]] | None = None,
) -> str:
    """DPO on the decided labels (cumulative by default) -> a registered checkpoint id. Idempotent: the same
    round and the same training data return the existing checkpoint.

    `select_pairs` lets an experiment arm change which decided pairs feed DPO (e.g. loop.experiment.runner's
    step-matched control); production passes None and trains on all of them."""
    from loop.ml.dpo import read_train_result, training_data_hash

    with uow() as session:
        rnd = session.get(Round, round_id)
        _check_collected(session, rnd)
        pairs = decided_items(session, _training_rounds(session, cfg, rnd))
        if select_pairs is not None and pairs:
            pairs = select_pairs(session, rnd, pairs)
        if not pairs:
            raise NoTrainingSignal(
                f"round {rnd.number}: no decided a/b labels to train on (ties and undecided items carry no "
                "signal); nothing was written"
            )
        from loop.ml.dpo import PreferencePair

        prefs = [PreferencePair(p.prompt, p.chosen, p.rejected) for p in pairs]
        data_hash = training_data_hash(prefs)
        done = finished_run(session, round_id, data_hash)
        done_id = done.checkpoint_id if done is not None else None
        initial = ensure_initial_checkpoint(session, cfg.policy.model)
        trained_rounds = sorted({p.round_id for p in pairs})
        arm, number = rnd.arm, rnd.number
        if done_id is None:
            base_id = rnd.policy_in if cfg.training.warm_start and rnd.policy_in else initial
            base_path = session.get(Checkpoint, base_id).path
            reference_path = session.get(Checkpoint, initial).path
            check_policies({initial: reference_path, base_id: base_path}, initial)
            checkpoint_id = f"{arm}-r{number}-{data_hash[:12]}"
    if done_id is not None:  # a crash may have come between the checkpoint and its margins
        log.info("round %s: already trained on this data -> %s", number, done_id)
        record_margins(cfg, uow, trained_rounds, done_id, initial, pairs)
        return done_id
    out_dir = cfg.paths.data_dir / "checkpoints" / checkpoint_id
    settings = training_settings(cfg)
    if out_dir.exists():  # trained before a crash, not yet registered
        result = read_train_result(out_dir)
    else:
        log.info("round %s/%s: DPO on %s pairs from %s", arm, number, len(prefs), base_id)
        result = _run_dpo(cfg, prefs, base_path, reference_path, out_dir, settings)
    with uow() as session:
        put_trained_checkpoint(
            session,
            checkpoint_id,
            path=str(out_dir.resolve()),
            base_id=base_id,
            round_id=round_id,
            label_count=len(prefs),
            data_hash=data_hash,
        )
        add_finished_run(
            session,
            round_id,
            data_hash=data_hash,
            label_count=len(prefs),
            checkpoint_id=checkpoint_id,
            settings=asdict(settings),
            metrics={"steps": result.steps, "train_loss": result.train_loss, "seconds": result.seconds},
        )
    record_margins(cfg, uow, trained_rounds, checkpoint_id, initial, pairs)
    log.info(
        "round %s/%s: checkpoint %s (%s steps, %.1f s)",
        arm,
        number,
        checkpoint_id,
        result.steps,
        result.seconds,
    )
    return checkpoint_id
