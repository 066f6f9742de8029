"""Retraining and evaluation wired to the database: which labels feed DPO, where checkpoints go, how runs and
evaluations are recorded so that re-running either is a no-op."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loop.config import Config
from storage import repositories as repo
from storage.db import UnitOfWork
from storage.errors import PvarLoopError
from storage.items import DecidedPair, decided_items
from storage.models import AnnotationItem, Checkpoint, Evaluation, Prompt, Round, TrainingRun

log = logging.getLogger("pvar_loop.training")


class TrainingDataError(PvarLoopError, ValueError):
    """The labels asked for cannot be trained on; nothing was written."""


class NoTrainingSignal(TrainingDataError):
    """Every label is a tie, undecided or discarded: DPO has nothing to learn from."""


def training_settings(cfg: Config):
    from loop.ml.dpo import TrainingSettings

    t = cfg.training
    return TrainingSettings(
        beta=t.beta,
        learning_rate=t.learning_rate,
        epochs=t.epochs,
        batch_size=t.batch_size,
        max_length=t.max_length,
        loss_type=t.loss_type,
        lora=t.lora,
        lora_r=t.lora_r,
        lora_alpha=t.lora_alpha,
        precompute_ref_log_probs=t.precompute_ref_log_probs,
        dtype=t.dtype,
        seed=t.seed,
    )


def _training_rounds(session, cfg: Config, rnd: Round) -> list[int]:
    if not cfg.training.cumulative:
        return [rnd.id]
    return list(
        session.scalars(
            select(Round.id).where(
                Round.arm == rnd.arm, Round.number <= rnd.number, Round.status != "cancelled"
            )
        )
    )


def _check_collected(session, rnd: Round) -> None:
    """Refuse a round whose collection is still open and has items without a decision."""
    if rnd.status not in ("pushed", "collecting", "scored", "planned"):
        return
    open_items = session.scalar(
        select(func.count()).where(
            AnnotationItem.round_id == rnd.id, AnnotationItem.status.not_in(("decided", "undecided"))
        )
    )
    if open_items:
        raise TrainingDataError(
            f"round {rnd.number} is still {rnd.status}: {open_items} of its items have no decided label yet; "
            "wait for the annotators (or cancel the round); nothing was written"
        )


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
    from loop.ml.dpo import read_train_result, train_dpo, training_data_hash

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
        done = session.scalar(
            select(TrainingRun).where(
                TrainingRun.round_id == round_id,
                TrainingRun.data_hash == data_hash,
                TrainingRun.status == "done",
            )
        )
        if done is not None:
            log.info("round %s: already trained on this data -> %s", rnd.number, done.checkpoint_id)
            return done.checkpoint_id
        initial = repo.ensure_initial_checkpoint(session, cfg.policy.model)
        base_id = rnd.policy_in if cfg.training.warm_start and rnd.policy_in else initial
        base_path = session.get(Checkpoint, base_id).path
        reference_path = session.get(Checkpoint, initial).path
        checkpoint_id = f"{rnd.arm}-r{rnd.number}-{data_hash[:12]}"
        arm, number = rnd.arm, rnd.number
    out_dir = cfg.paths.data_dir / "checkpoints" / checkpoint_id
    settings = training_settings(cfg)
    if out_dir.exists():  # trained before a crash, not yet registered
        result = read_train_result(out_dir)
    else:
        log.info("round %s/%s: DPO on %s pairs from %s", arm, number, len(prefs), base_id)
        result = train_dpo(
            prefs, policy_dir=base_path, reference_dir=reference_path, output_dir=out_dir, settings=settings
        )
    with uow() as session:
        session.merge(
            Checkpoint(
                id=checkpoint_id,
                path=str(out_dir.resolve()),
                base_id=base_id,
                round_id=round_id,
                label_count=len(prefs),
                data_hash=data_hash,
            )
        )
        session.flush()
        session.add(
            TrainingRun(
                round_id=round_id,
                data_hash=data_hash,
                label_count=len(prefs),
                status="done",
                checkpoint_id=checkpoint_id,
                settings=asdict(settings),
                metrics={"steps": result.steps, "train_loss": result.train_loss, "seconds": result.seconds},
                finished_at=datetime.now(UTC),
            )
        )
    log.info(
        "round %s/%s: checkpoint %s (%s steps, %.1f s)",
        arm,
        number,
        checkpoint_id,
        result.steps,
        result.seconds,
    )
    return checkpoint_id


def judge_for(cfg: Config, session):
    """(judge id, judge) for evaluation: the rule-based verifier (prompts carry constraints) or the RM."""
    if cfg.evaluation.judge == "verifier":
        from loop.evaluation.verifier import verify

        constraints = {
            p.text: (p.meta or {}).get("constraints")
            for p in session.scalars(select(Prompt).where(Prompt.split == "eval"))
        }
        missing = [t for t, c in constraints.items() if not c]
        if missing:
            raise TrainingDataError(
                f'[evaluation] judge = "verifier" needs metadata.constraints on every eval prompt; '
                f"{len(missing)} have none (e.g. {missing[0][:60]!r})"
            )
        return "verifier", lambda prompt, response: verify(response, constraints[prompt])
    from loop.ml.rewards import RewardScorer

    r = cfg.reward
    return f"reward:{r.model}", RewardScorer(
        r.model, dtype=r.dtype, max_length=r.max_length, batch_size=r.batch_size
    )


def evaluate_checkpoint(cfg: Config, uow: UnitOfWork, checkpoint_id: str) -> Evaluation:
    """Win rate of a checkpoint against the initial policy on the eval split (stored once per judge)."""
    from loop.evaluation.win_rate import evaluate_policies

    with uow() as session:
        reference = repo.ensure_initial_checkpoint(session, cfg.policy.model)
        ckpt = session.get(Checkpoint, checkpoint_id)
        if ckpt is None:
            raise TrainingDataError(f"no checkpoint {checkpoint_id!r}; see `pvar-loop status`")
        judge_id, judge = judge_for(cfg, session)
        existing = session.scalar(
            select(Evaluation).where(
                Evaluation.checkpoint_id == checkpoint_id,
                Evaluation.reference_id == reference,
                Evaluation.judge == judge_id,
            )
        )
        if existing is not None:
            return existing
        prompts = list(session.scalars(select(Prompt.text).where(Prompt.split == "eval").order_by(Prompt.id)))
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


def latest_checkpoint(session) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.round_id.is_not(None))
        .order_by(Checkpoint.created_at.desc())
        .limit(1)
    )


def export_preferences(session, out: Path) -> int:
    """Write decided pairs as a TRL-ready conversational preference dataset (.jsonl or .parquet)."""
    pairs = decided_items(session)
    rows = [
        {
            "prompt": [{"role": "user", "content": p.prompt}],
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
            "round_id": p.round_id,
            "prompt_id": p.prompt_id,
        }
        for p in pairs
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp)
    elif out.suffix in (".jsonl", ".json"):
        import json

        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        raise TrainingDataError(f"{out}: use a .jsonl or .parquet file name")
    tmp.replace(out)
    return len(rows)
