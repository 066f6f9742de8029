"""DPO training of the policy on labelled preference pairs, and a TRL-independent reward margin to check it.

TRL itself is driven from loop.ml.trl_backend, models load through loop.ml.loading and checkpoints are
published through loop.ml.checkpoint_dirs; those (and datasets) are imported inside the functions, so
importing loop.ml.dpo stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loop.ml.settings import TrainingSettings
from storage.errors import PvarLoopError

# Written into every checkpoint so a re-run can recover what produced it (see read_train_result).
TRAIN_META_FILE = "pvar_training.json"


class TrainingError(PvarLoopError, RuntimeError):
    """DPO training or checkpointing failed; the message keeps the underlying library's error."""


@dataclass(frozen=True)
class PreferencePair:
    """One labelled comparison: for `prompt`, `chosen` was preferred over `rejected`."""

    prompt: str
    chosen: str
    rejected: str

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(
                    f"PreferencePair.{name}: must be a string, got {type(getattr(self, name)).__name__}"
                )


@dataclass(frozen=True)
class TrainResult:
    """What one DPO run produced."""

    checkpoint_dir: Path
    steps: int
    train_loss: float
    seconds: float
    data_hash: str


def training_data_hash(pairs: Iterable[PreferencePair]) -> str:
    """sha256 of the pairs as a multiset: the same pairs in any order hash the same, duplicates count."""
    rows = sorted(
        json.dumps([p.prompt, p.chosen, p.rejected], ensure_ascii=False, separators=(",", ":")) for p in pairs
    )
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode("utf-8"))
        digest.update(b"\n")  # rows are JSON, so they contain no raw newline: the separator is unambiguous
    return digest.hexdigest()


def _conversation(pair: PreferencePair) -> dict[str, list[dict[str, str]]]:
    return {
        "prompt": [{"role": "user", "content": pair.prompt}],
        "chosen": [{"role": "assistant", "content": pair.chosen}],
        "rejected": [{"role": "assistant", "content": pair.rejected}],
    }


def build_preference_dataset(pairs: Sequence[PreferencePair]):
    """A datasets.Dataset in TRL's conversational preference format (the chat template is applied by TRL)."""
    if not pairs:
        raise ValueError("build_preference_dataset: no preference pairs given (need at least one)")
    from datasets import Dataset

    return Dataset.from_list([_conversation(p) for p in pairs])


def _same_model(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two model locations (local dirs or hub ids) name the same weights."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return str(a) == str(b)


def train_dpo(
    pairs: Sequence[PreferencePair],
    *,
    policy_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: TrainingSettings,
    main_process: bool = True,
) -> TrainResult:
    """Warm-start from policy_dir, DPO-train against reference_dir, save a full checkpoint to output_dir.

    The reference is always reference_dir (the initial policy). No second model copy is loaded when TRL does
    not need one: with LoRA or precompute_ref_log_probs and policy_dir == reference_dir, the reference comes
    from the policy itself (adapters disabled / log-probs computed before the first step); when they differ
    (a warm start), reference_dir is loaded as a separate frozen model. LoRA adapters are merged into the
    weights before saving, so every checkpoint is a plain transformers model.

    The checkpoint is written to a hidden sibling temp dir and renamed into place, so a crash never leaves a
    half-written output_dir (a killed process leaves a hidden ".<name>.partial-*" sibling, which the next training
    started in the same directory removes).
    An existing output_dir is an error (FileExistsError), raised before any training: checkpoints are never
    overwritten; read_train_result recovers what produced an existing one.

    In a distributed run (loop.ml.dpo_job under `accelerate launch`) every process calls this; only the one
    with main_process=True claims, saves and publishes output_dir, the others train and return.
    """
    from loop.ml.checkpoint_dirs import claim_output_dir, scratch_dir, trainer_dir
    from loop.ml.trl_backend import run_dpo_trainer

    pairs = _checked_inputs(pairs, settings)
    output_dir = claim_output_dir(output_dir, "train_dpo") if main_process else Path(output_dir)
    data_hash = training_data_hash(pairs)
    dataset = build_preference_dataset(pairs)
    tokenizer, model, ref_model = _load_models(policy_dir, reference_dir, settings)

    with scratch_dir(output_dir) as scratch:
        try:
            run = run_dpo_trainer(
                model, ref_model, tokenizer, dataset, settings, output_dir=trainer_dir(scratch)
            )
        except Exception as e:
            raise TrainingError(f"DPO training failed: {type(e).__name__}: {e}") from e
        result = TrainResult(output_dir, run.steps, run.train_loss, run.seconds, data_hash)
        if not main_process:  # the main process of the distributed run saves the (identical) weights
            return result
        meta = {
            "steps": run.steps,
            "train_loss": run.train_loss,
            "seconds": run.seconds,
            "data_hash": data_hash,
            "n_pairs": len(pairs),
            "policy": str(policy_dir),
            "reference": str(reference_dir),
            "settings": settings.to_dict(),
        }
        _save_and_publish(run.model, tokenizer, scratch, output_dir, meta)
    return result


def _checked_inputs(pairs: Sequence[PreferencePair], settings: TrainingSettings) -> list[PreferencePair]:
    """The pairs as a list; no pairs or settings of the wrong type are refused before anything loads."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("train_dpo: no preference pairs given (need at least one)")
    if not isinstance(settings, TrainingSettings):
        raise TypeError(f"train_dpo: settings must be TrainingSettings, got {type(settings).__name__}")
    return pairs


def _load_models(policy_dir: str | os.PathLike, reference_dir: str | os.PathLike, settings: TrainingSettings):
    """(tokenizer, policy, reference or None): no second model copy when TRL gets the reference from the
    policy itself (LoRA or precomputed reference log-probs, and the policy is the reference)."""
    from loop.ml.loading import ModelLoadError, load_causal_lm, load_tokenizer

    needs_ref = not ((settings.lora or settings.precompute_here) and _same_model(policy_dir, reference_dir))
    try:
        tokenizer = load_tokenizer(policy_dir)
        model = load_causal_lm(policy_dir)
        ref_model = load_causal_lm(reference_dir) if needs_ref else None
    except ModelLoadError as e:
        raise TrainingError(f"train_dpo: {e}") from e
    return tokenizer, model, ref_model


def _save_and_publish(model, tokenizer, scratch: Path, output_dir: Path, meta: dict) -> None:
    """Save the trained weights in the scratch dir and rename them into output_dir with their record."""
    from loop.ml.checkpoint_dirs import publish_checkpoint, save_checkpoint

    try:
        checkpoint = save_checkpoint(model, tokenizer, scratch)
    except Exception as e:
        raise TrainingError(f"cannot save checkpoint for {output_dir}: {e}") from e
    publish_checkpoint(checkpoint, output_dir, TRAIN_META_FILE, meta, "train_dpo")


def read_train_result(checkpoint_dir: str | os.PathLike) -> TrainResult:
    """The TrainResult recorded in a checkpoint written by train_dpo (for idempotent re-runs)."""
    from loop.ml.checkpoint_dirs import read_checkpoint_meta

    path = Path(checkpoint_dir) / TRAIN_META_FILE
    try:
        meta = read_checkpoint_meta(checkpoint_dir, TRAIN_META_FILE)
        steps, loss, seconds = int(meta["steps"]), float(meta["train_loss"]), float(meta["seconds"])
        return TrainResult(Path(checkpoint_dir), steps, loss, seconds, str(meta["data_hash"]))
    except (OSError, ValueError, KeyError) as e:
        raise TrainingError(f"{path}: not a readable train_dpo record: {e}") from e


def dpo_reward_margin(
    policy_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    pairs: Sequence[PreferencePair],
    beta: float,
    *,
    batch_size: int = 16,
) -> float:
    """Mean over pairs of the DPO implicit reward margin beta*[(log pi/ref)(chosen) - (log pi/ref)(rejected)].

    Computed with our own forward passes, not TRL's (see loop.ml.logprobs), so tests can check what training did.
    It is 0 when policy == reference and grows as DPO pushes chosen above rejected.
    """
    if not pairs:
        raise ValueError("dpo_reward_margin: no preference pairs given")
    from loop.ml.loading import ModelLoadError
    from loop.ml.logprobs import completion_logprobs

    prompts = [p.prompt for p in pairs for _ in (0, 1)]
    completions = [c for p in pairs for c in (p.chosen, p.rejected)]
    try:
        policy = completion_logprobs(policy_dir, prompts, completions, batch_size=batch_size)
        reference = completion_logprobs(reference_dir, prompts, completions, batch_size=batch_size)
    except (OSError, ModelLoadError) as e:
        raise TrainingError(f"dpo_reward_margin: cannot load a model: {e}") from e
    ratio = policy - reference  # chosen0, rejected0, chosen1, rejected1, ...
    return float(beta * (ratio[0::2] - ratio[1::2]).mean())
