"""Replay mode: the paper's "top X% of prompts by PVar vs the full dataset" on a dataset that already holds
responses and their ratings (UltraFeedback's schema), with the dataset's own ratings as the annotator.

- ingest_ultrafeedback_style: prompts -> the pool; each prompt's completions -> generations of the
  pseudo-checkpoint "dataset" (no sampling); the ratings are kept in the prompt's metadata ("ratings", by
  sample index).
- The pool is scored with the configured reward model over those completions (PVar and reward gap per
  prompt); a round's pair is still the highest- vs lowest-reward completion.
- A LookupJudge built from the ratings answers (higher rating wins, equal ratings tie).
- Arms: PVar with a budget of X% of the pool, and full; one round each, trained from the initial policy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from annotation.simulated.judges import LookupJudge
from loop.config import Config
from loop.experiment.annotator import lookup_annotation
from loop.experiment.runner import ArmSpec, ExperimentError, ExperimentPlan, run_experiment
from loop.ingest import prompt_id
from storage.db import UnitOfWork
from storage.models import Checkpoint, Round
from storage.repositories.checkpoints import ensure_checkpoint
from storage.repositories.prompts import add_prompts, count_train_prompts
from storage.repositories.scores import add_generations, max_samples_per_prompt, train_samples
from storage.statuses import Choice

DATASET_CHECKPOINT = "dataset"
RATING_KEYS = ("overall_score", "fine-grained_score")


@dataclass
class ReplayIngestReport:
    prompts: int = 0
    eval_prompts: int = 0
    completions: int = 0


def _rating(completion: dict, key: str, where: str) -> float:
    """The completion's rating under `key`: a top-level score, or an aspect's "Rating" in `annotations`."""
    value = completion.get(key)
    if value is None:
        aspect = (completion.get("annotations") or {}).get(key)
        value = aspect.get("Rating") if isinstance(aspect, dict) else None
    if value is None:
        raise ExperimentError(f"{where}: no rating {key!r} (top-level or annotations.{key}.Rating)")
    try:
        rating = float(value)
    except (TypeError, ValueError):
        raise ExperimentError(f"{where}: rating {key!r} is not a number: {value!r}") from None
    if not math.isfinite(rating):
        raise ExperimentError(f"{where}: rating {key!r} is not finite: {value!r}")
    return rating


def _parse_line(line: str, where: str, rating_key: str) -> tuple[str, list[tuple[str, float]]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ExperimentError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(record, dict):
        raise ExperimentError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text = record.get("prompt", record.get("instruction"))
    if not isinstance(text, str) or not text.strip():
        raise ExperimentError(f"{where}: 'prompt' (or 'instruction') must be a non-empty string")
    completions = record.get("completions")
    if not isinstance(completions, list) or len(completions) < 2:
        raise ExperimentError(f"{where}: 'completions' must be a list of at least 2 objects")
    out = []
    for i, c in enumerate(completions):
        at = f"{where}: completions[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("response"), str):
            raise ExperimentError(f"{at}: must be an object with a string 'response'")
        out.append((c["response"], _rating(c, rating_key, at)))
    return text, out


def _is_eval(pid: str, eval_fraction: float) -> bool:
    # A stable split from the content hash: re-ingesting puts every prompt on the same side.
    return int(pid[:8], 16) / 0x1_0000_0000 < eval_fraction


def ingest_ultrafeedback_style(
    session: Session, path: Path, *, rating: str = "overall_score", eval_fraction: float = 0.0
) -> ReplayIngestReport:
    """Load a JSONL in UltraFeedback's schema (idempotent). `eval_fraction` of the prompts (by hash) go to
    the eval split instead of the pool; their completions are not needed and not stored."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ExperimentError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ExperimentError(f"{path}: cannot read: {e}") from e
    parsed = [
        _parse_line(line, f"{path}:{n}", rating) for n, line in enumerate(lines, start=1) if line.strip()
    ]
    if not parsed:
        raise ExperimentError(f"{path}: no records")
    ensure_checkpoint(session, DATASET_CHECKPOINT, f"dataset:{path.name}")
    report = ReplayIngestReport()
    prompts, generations = {}, []
    for n, (text, completions) in enumerate(parsed, start=1):
        pid = prompt_id(text)
        split = "eval" if _is_eval(pid, eval_fraction) else "train"
        meta = {"rating_key": rating, "ratings": [r for _, r in completions]} if split == "train" else {}
        prompts[pid] = {
            "id": pid,
            "text": text.strip(),
            "source": path.name,
            "source_id": str(n),
            "split": split,
            "meta": meta,
        }
        if split == "train":
            generations += [
                {"prompt_id": pid, "sample_index": i, "text": response, "n_tokens": 0}
                for i, (response, _) in enumerate(completions)
            ]
    add_prompts(session, list(prompts.values()))
    add_generations(session, DATASET_CHECKPOINT, generations)
    report.prompts = sum(p["split"] == "train" for p in prompts.values())
    report.eval_prompts = len(prompts) - report.prompts
    report.completions = len(generations)
    return report


def lookup_judge(session: Session) -> LookupJudge:
    """Every pair of a prompt's dataset completions decided by their ratings (equal ratings tie)."""
    rows = train_samples(session, DATASET_CHECKPOINT)
    by_prompt: dict[str, list[tuple[str, float]]] = {}
    for text, meta, index, response in rows:
        by_prompt.setdefault(text, []).append((response, float(meta["ratings"][index])))
    decisions: dict[tuple[str, str, str], str] = {}
    for text, scored in by_prompt.items():
        for i, (ra, sa) in enumerate(scored):
            for rb, sb in scored[i + 1 :]:
                if ra != rb and (text, rb, ra) not in decisions:
                    decisions.setdefault(
                        (text, ra, rb), Choice.A if sa > sb else Choice.B if sa < sb else Choice.TIE
                    )
    return LookupJudge(decisions)


class ReplayGenerator:
    """The generator of replay scoring: the dataset's completions are all there is, it samples nothing."""

    def generate(self, prompts: list[str], k: int, seed: int) -> list[list]:
        return [[] for _ in prompts]

    def close(self) -> None:
        pass


def replay_score(cfg: Config, uow: UnitOfWork, checkpoint_id: str, round_id: int) -> None:
    """Round `score` service: reward every dataset completion of the pool, PVar per prompt (no sampling)."""
    from loop.ml.rewards import RewardScorer
    from loop.scoring.pool import _device, reward_model_id, score_pool
    from loop.scoring.steps import ScoreRequest

    if checkpoint_id != DATASET_CHECKPOINT:
        raise ExperimentError(
            f"replay rounds score the dataset's completions, not checkpoint {checkpoint_id}"
        )
    with uow() as session:
        k = max_samples_per_prompt(session, DATASET_CHECKPOINT)
    r = cfg.reward
    scorer = RewardScorer(
        reward_model_id(cfg),
        dtype=r.dtype,
        max_length=r.max_length,
        batch_size=r.batch_size,
        device=_device(),
    )
    try:
        score_pool(
            uow,
            ReplayGenerator(),
            scorer,
            ScoreRequest(checkpoint_id=DATASET_CHECKPOINT, progress=False, round_id=round_id),
            k=max(k or 2, 2),
            seed=0,
            batch_size=cfg.generation.batch_size,
        )
    finally:
        scorer.close()


def _from_dataset(session: Session, rnd: Round) -> None:
    rnd.policy_in = DATASET_CHECKPOINT


def replay_arms(top_fraction: float) -> list[ArmSpec]:
    return [ArmSpec(f"replay-pvar-top{round(top_fraction * 100):g}", "pvar"), ArmSpec("replay-full", "full")]


def run_replay(
    cfg: Config, uow: UnitOfWork, *, top_fraction: float = 0.1, out: Path | None = None, on_round=None
) -> dict:
    """Top `top_fraction` of the pool by PVar vs the full pool, labelled by the dataset's ratings.

    Training starts from the initial policy (warm_start off: "dataset" is not a model) and evaluation uses
    the reward model as judge (dataset prompts carry no verifier constraints)."""
    if not 0.0 < top_fraction <= 1.0:
        raise ExperimentError(f"top fraction must be in (0, 1], got {top_fraction}")
    with uow() as session:
        pool = count_train_prompts(session)
        if session.get(Checkpoint, DATASET_CHECKPOINT) is None or not pool:
            raise ExperimentError("no replay dataset ingested: run ingest_ultrafeedback_style first")
        judge = lookup_judge(session)
    budget = max(1, math.ceil(top_fraction * pool))
    rcfg = cfg.model_copy(
        update={
            "training": cfg.training.model_copy(update={"warm_start": False}),
            "evaluation": cfg.evaluation.model_copy(update={"judge": "reward"}),
        }
    )
    plan = ExperimentPlan(
        arms=replay_arms(top_fraction),
        rounds=1,
        budget=budget,
        score=replay_score,
        prepare_round=_from_dataset,
    )
    return run_experiment(rcfg, uow, plan, lookup_annotation(judge), out=out, on_round=on_round)
