"""The sweep's selection reward models, each scoring the SAME stored pool samples of the initial policy.

- learned, one per seed: seed 0 is the world's MiniLM RM (loop/demo/run.py trains it on annotator labels of the
  seed pool); seed s > 0 trains the same base on the same labels with training seed s (another RM draw).
- stand-in-<agreement>, one per seed: gold + noise (loop/experiment/standin.py) with sigma calibrated on the
  pool's samples to the target agreement, the noise drawn with the seed.
Scores are stored under each RM's id (RewardScore.reward_model), so selection, pairing and the report read them
like any reward model's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from loop.config import Config
from loop.experiment.standin import (
    StandInRewardModel,
    gold_gaps,
    measured_agreement,
    noise_for_agreement,
    standin_id,
)
from loop.experiment.sweep.cells import LEARNED, SelectionRMs, SweepProfile
from storage.db import UnitOfWork
from storage.repositories.checkpoints import ensure_initial_checkpoint
from storage.repositories.prompts import TRAIN, constraints_by_text, prompt_texts
from storage.repositories.scores import scored_generations, scored_train_prompt_ids, train_samples

log = logging.getLogger(__name__)

ScoreService = Callable[[Config, UnitOfWork, str, int | None], None]


def pool_gold(uow: UnitOfWork):
    from loop.evaluation.verifier import gold_by_prompt

    with uow() as session:
        return gold_by_prompt(constraints_by_text(session, split=TRAIN))


def learned_rm_dir(data_dir: Path, seed: int) -> Path:
    """Where draw `seed` > 0 of the learned RM is kept (draw 0 is the world's own selection RM)."""
    return data_dir / "reward-models" / f"seed-rm-s{seed}"


def seed_labels_of(world_rm: Path) -> Path:
    """The seed labels the world's selection RM was trained on, written next to it (loop.demo)."""
    return world_rm.parent / f"{world_rm.name}-seed-labels.jsonl"


def seed_gold(data_dir: Path):
    """The verifier against the seed pool's own constraints: what the learned RM's held-out agreement is
    measured with (the seed prompts are not in the database)."""
    from loop.demo.seed_reward_model import read_seed_prompts
    from loop.evaluation.verifier import gold_by_prompt

    rows = read_seed_prompts(data_dir / "prompts" / "seed.jsonl")
    return gold_by_prompt({r["prompt"]: r["metadata"]["constraints"] for r in rows})


def train_learned_rm(
    data_dir: Path, model_cache: Path, seed: int, *, max_length: int, world_rm: Path
) -> Path:
    """Draw `seed` of the learned RM: draw 0 is world_rm, the world's selection RM (loop.demo trains it with
    this recipe and seed 0, into the model cache or, in sweeps made before that, into the data dir); draw s > 0
    trains on world_rm's seed labels with training seed s (once; kept in the data dir)."""
    from loop.experiment.runner import ExperimentError
    from loop.ml.dpo import PreferencePair
    from loop.ml.offline_models import load_minilm_reward_backbone
    from loop.ml.reward_model import train_reward_model
    from loop.ml.settings import RewardTrainSettings

    if seed == 0:
        return world_rm
    out = learned_rm_dir(data_dir, seed)
    if out.exists():
        return out
    labels = seed_labels_of(world_rm)
    if not labels.is_file():
        raise ExperimentError(
            f"{labels}: the seed labels of [reward] model {world_rm} are missing (the learned RM draws train on "
            "them); start the sweep in a new --data-dir"
        )
    pairs = [PreferencePair(**json.loads(line)) for line in labels.read_text(encoding="utf-8").splitlines()]
    result = train_reward_model(
        pairs,
        base_dir=load_minilm_reward_backbone(model_cache),
        output_dir=out,
        settings=RewardTrainSettings(
            learning_rate=1e-4, epochs=4, batch_size=16, max_length=max_length, dtype="float32", seed=seed
        ),
        judge=seed_gold(data_dir),
    )
    log.info(
        "learned RM seed %d: held-out agreement with the verifier %s on %d seed pairs",
        seed,
        result.judge_agreement,
        result.n_judged,
    )
    return Path(result.checkpoint_dir)


def standin_service(sigma: float, seed: int, model_id: str, gold) -> ScoreService:
    """A round's score step for a stand-in RM: its scores of the checkpoint's pool samples (generates only what
    is missing: for the initial policy, after the first RM, nothing; a later round of a sequential cell samples
    with that round's checkpoint)."""

    def score(cfg: Config, uow: UnitOfWork, checkpoint_id: str, round_id: int | None) -> None:
        from loop.rounds.candidates import candidate_prompt_ids
        from loop.scoring.pool import score_with_scorer
        from loop.scoring.steps import ScoreRequest
        from storage.repositories.checkpoints import get_checkpoint

        with uow() as session:
            checkpoint = get_checkpoint(session, checkpoint_id)
            trained = checkpoint is not None and checkpoint.round_id is not None
            weights = checkpoint.path if trained else cfg.policy.model
        scorer = StandInRewardModel(gold, sigma=sigma, seed=seed, model_id=model_id)
        # A trained policy samples only the round's free candidates, as the ordinary score step does; the
        # initial policy's stored samples cover the whole pool.
        candidates = candidate_prompt_ids(cfg, uow, round_id) if trained and round_id is not None else None
        request = ScoreRequest(
            checkpoint_id=checkpoint_id, progress=False, round_id=round_id, prompt_ids=candidates
        )
        score_with_scorer(cfg, uow, scorer, request, model=weights)

    return score


def rm_agreement(uow: UnitOfWork, checkpoint_id: str, reward_model: str, gold) -> tuple[float | None, int]:
    """Measured agreement of one RM's stored scores with the gold, on the pool's within-prompt pairs."""
    with uow() as session:
        ids = scored_train_prompt_ids(session, checkpoint_id, reward_model)
        texts = prompt_texts(session, ids)
        samples: dict[str, list[tuple[str, float]]] = {}
        for gen, score in scored_generations(session, ids, checkpoint_id, reward_model):
            samples.setdefault(texts[gen.prompt_id], []).append((gen.text, score))
    return measured_agreement(samples, gold)


def prepare_selection_rms(
    cfg: Config, uow: UnitOfWork, p: SweepProfile, data_dir: Path, model_cache: Path
) -> tuple[SelectionRMs, Callable[[str, int], ScoreService]]:
    """Sample and score the pool with every selection RM (idempotent) and return their ids and score services.

    The first scoring pass samples the pool with the initial policy; every later RM reuses those samples."""
    from loop.rounds import steps
    from loop.scoring.pool import score_with_config

    gold = pool_gold(uow)
    with uow() as session:
        initial = ensure_initial_checkpoint(session, cfg.policy.model)
    ids: dict[tuple[str, int], str] = {}
    services: dict[tuple[str, int], ScoreService] = {}
    facts: dict[str, dict] = {}
    if p.learned:
        world_rm = Path(cfg.reward.model)
        for seed in p.seeds:
            rm = train_learned_rm(
                data_dir, model_cache, seed, max_length=cfg.reward.max_length, world_rm=world_rm
            )
            path = str(rm)
            ids[(LEARNED, seed)] = path
            rcfg = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"model": path})})
            log.info(score_with_config(rcfg, uow, checkpoint_id=initial, progress=False).summary())
            services[(LEARNED, seed)] = steps.score
    if p.standins:
        if not ids:  # no learned RM sampled the pool yet: a stand-in pass samples it
            first = standin_service(1.0, p.seeds[0], "standin-calibration", gold)
            first(cfg, uow, initial, None)
        with uow() as session:
            by_prompt: dict[str, list[float]] = {}
            for text, _meta, _, response in train_samples(session, initial):
                by_prompt.setdefault(text, []).append(gold(text, response))
        gaps = gold_gaps([v for v in by_prompt.values() if None not in v])
        for target in p.standins:
            sigma = noise_for_agreement(gaps, target)
            key = f"standin-{target:.2f}"
            facts[key] = {"target_agreement": target, "sigma": sigma, "gold_pairs": int(gaps.size)}
            for seed in p.seeds:
                model_id = standin_id(target, seed)
                ids[(key, seed)] = model_id
                services[(key, seed)] = standin_service(sigma, seed, model_id, gold)
                services[(key, seed)](cfg, uow, initial, None)
    for (key, seed), model_id in ids.items():
        agreement, n = rm_agreement(uow, initial, model_id, gold)
        facts.setdefault(key, {}).setdefault("measured", {})[str(seed)] = {"agreement": agreement, "pairs": n}
        log.info(
            "selection RM %s seed %d: agreement with the gold %s on %d pool pairs", key, seed, agreement, n
        )
    return SelectionRMs(ids=ids, facts=facts), lambda rm, seed: services[(rm, seed)]
