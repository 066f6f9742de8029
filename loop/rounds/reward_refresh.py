"""The selection reward model learns from the humans: `[reward] refresh = "every_round"`.

When a production round's labels are in (the first work of its training step), a candidate is trained from the
configured `[reward] model` (the starting point) on every decided a/b label of the main arm so far, except a
held-out share of prompts (`[reward_training] heldout_fraction`, by prompt hash: a prompt held out once stays
held out, so no candidate ever trains on the labels it is judged by, and the split is the same in every round).
Until `[reward_training] refresh_min_heldout` pairs are held out no candidate is trained: agreement on a few
pairs would keep or drop a model by chance.
The candidate and the model selecting now are scored on the same held-out pairs through the selection path
(RewardScorer); agreement = share of held-out pairs whose human choice scores strictly higher. The candidate is
kept when its agreement is at least the old one's: on a tie it wins, since it has seen more labels and is no
worse on the ones neither saw. A kept candidate selects from the next round on (loop.scoring.pool
.selection_reward_model); the pool is rescored with it there because scores are keyed by reward model.

Every candidate starts from `[reward] model`, not from the last kept candidate: a candidate is then a function
of (starting model, labels, settings) alone, old labels are not trained on again at every round, and a
rejected candidate leaves no trace on the next one.

Resumable: the round's RewardRefresh row is written last, in one transaction. A crash before it leaves the old
model selecting and the round in `training`; the next tick redoes the refresh, reusing a candidate already
published under its content-hash directory instead of training it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from loop.config import Config
from storage.db import UnitOfWork
from storage.errors import PvarLoopError
from storage.models import Round
from storage.statuses import PRODUCTION_ARM, is_production_arm

log = logging.getLogger(__name__)


class RewardRefreshError(PvarLoopError, RuntimeError):
    """A refresh that cannot go on; the message names the directory or setting at fault."""


def reward_train_settings(
    cfg: Config,
    *,
    learning_rate: float | None = None,
    epochs: int | None = None,
    heldout_fraction: float | None = None,
):
    """[reward_training] with optional overrides; batch size and truncation are [reward]'s, so the model is
    trained on the inputs it will score. bf16 here is autocast: checkpoints stay float32."""
    from loop.ml.settings import RewardTrainSettings

    t = cfg.reward_training
    return RewardTrainSettings(
        learning_rate=t.learning_rate if learning_rate is None else learning_rate,
        epochs=t.epochs if epochs is None else epochs,
        batch_size=cfg.reward.batch_size,
        max_length=cfg.reward.max_length,
        dtype="bfloat16" if cfg.reward.dtype == "bfloat16" else "float32",
        heldout_fraction=t.heldout_fraction if heldout_fraction is None else heldout_fraction,
        seed=t.seed,
    )


def refresh_round(
    cfg: Config,
    uow: UnitOfWork,
    round_id: int,
    *,
    training_pairs: Callable[[list], list] | None = None,
) -> None:
    """Refresh the selection reward model after round `round_id`'s labels, once (a recorded refresh is not
    redone). `training_pairs` maps the pairs the candidate trains on (a test hook: flipped labels give a worse
    candidate); the held-out pairs it is judged on are never touched."""
    from loop.ml.reward_model import split_pairs
    from loop.scoring.pool import selection_reward_model
    from storage.repositories.items import decided_items
    from storage.repositories.reward_refreshes import refresh_of_round
    from storage.repositories.rounds import round_ids_up_to

    with uow() as session:
        rnd = session.get(Round, round_id)
        if rnd is None:
            raise RewardRefreshError(f"round id {round_id} vanished")
        if (
            cfg.reward.refresh == "off"
            or not is_production_arm(rnd.arm)
            or refresh_of_round(session, round_id)
        ):
            return
        number = rnd.number
        previous = selection_reward_model(session, cfg)
        pairs = decided_items(session, round_ids_up_to(session, number, PRODUCTION_ARM))
    start = time.perf_counter()
    train, heldout = split_pairs(pairs, cfg.reward_training.heldout_fraction)
    row = {
        "round_id": round_id,
        "base_model": cfg.reward.model,
        "previous_model": previous,
        "n_pairs": len(pairs),
        "n_train": len(train) if heldout else 0,
        "n_heldout": len(heldout),
    }
    minimum = cfg.reward_training.refresh_min_heldout
    if not heldout:
        row |= {
            "candidate_model": None,
            "kept": False,
            "reason": f"{len(pairs)} decided labels on too few distinct prompts to hold any out; not refreshed",
        }
    elif len(heldout) < minimum:
        row |= {
            "n_train": 0,
            "candidate_model": None,
            "kept": False,
            "reason": f"only {len(heldout)} held-out pairs, fewer than [reward_training] refresh_min_heldout = "
            f"{minimum}: too few to tell a better model from a worse one; not refreshed",
        }
    else:
        candidate = _train_candidate(cfg, training_pairs(train) if training_pairs else train, number)
        row |= _compare(cfg, previous, candidate, heldout)
    row["seconds"] = time.perf_counter() - start
    _record(uow, row)
    _log(number, row)


def _compare(cfg: Config, previous: str, candidate: str, heldout: list) -> dict:
    """Agreement of both models with the humans on the held-out pairs, and which one selects next."""
    from loop.evaluation.paired import mean_interval
    from loop.ml.reward_model import evaluate_reward_model

    r = cfg.reward
    measure = {"max_length": r.max_length, "batch_size": r.batch_size, "dtype": r.dtype}
    old = evaluate_reward_model(previous, heldout, **measure)
    new = evaluate_reward_model(candidate, heldout, **measure)
    kept = new.accuracy >= old.accuracy  # both are numbers: held-out is not empty
    # Same pairs for both models: the paired difference's interval says how much the verdict can be trusted.
    both = [(n, o) for n, o in zip(new.correct, old.correct, strict=True) if n is not None and o is not None]
    diff = mean_interval([float(n) - float(o) for n, o in both]) if both else None
    interval = f"difference {diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] on " if diff else ""
    evidence = f"{new.accuracy:.3f} vs {old.accuracy:.3f}, {interval}{len(heldout)} held-out pairs"
    return {
        "candidate_model": candidate,
        "old_agreement": old.accuracy,
        "new_agreement": new.accuracy,
        "kept": kept,
        "reason": f"held-out agreement did not drop: {evidence}"
        if kept
        else f"held-out agreement dropped; old model stays: {evidence}",
    }


def _train_candidate(cfg: Config, train: list, number: int) -> str:
    """Train (or, after a crash, reuse) the candidate; its directory name carries the hash of its inputs."""
    from loop.ml.reward_model import RewardCheckpointConflict, reward_data_hash, train_or_reuse

    settings = reward_train_settings(cfg, heldout_fraction=0.0)  # the held-out share is split off already
    base = cfg.reward.model
    data_hash = reward_data_hash(train, base, settings)
    out = (cfg.paths.data_dir / "reward-models" / f"refresh-r{number}-{data_hash[:12]}").resolve()
    if not out.exists():
        log.info("round %s: training a reward-model candidate from %s on %s labels", number, base, len(train))
    try:
        _, reused = train_or_reuse(
            train, base_dir=base, output_dir=out, settings=settings, eval_batch_size=cfg.reward.batch_size
        )
    except RewardCheckpointConflict as e:
        raise RewardRefreshError(f"round {number}'s reward-model candidate: {e}") from e
    if reused:
        log.info("round %s: reusing the reward-model candidate %s (trained before a crash)", number, out)
    return str(out)


def _record(uow: UnitOfWork, row: dict) -> None:
    from storage.repositories.reward_refreshes import add_refresh, refresh_of_round

    with uow() as session:
        if refresh_of_round(session, row["round_id"]) is None:
            add_refresh(session, **row)


def _log(number: int, row: dict) -> None:
    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    verdict = (
        f"kept: {row['candidate_model']} selects from the next round on"
        if row["kept"]
        else f"not kept ({row['reason']}): {row['previous_model']} still selects"
    )
    log.info(
        "round %s: reward model refresh on %s decided labels (%s trained on, %s held out): held-out agreement "
        "old %s, new %s; %s (%.1f s)",
        number,
        row["n_pairs"],
        row["n_train"],
        row["n_heldout"],
        share(row.get("old_agreement")),
        share(row.get("new_agreement")),
        verdict,
        row["seconds"],
        extra={"event": "reward refresh", "round": number, "kept": row["kept"]},
    )
