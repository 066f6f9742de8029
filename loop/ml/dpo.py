"""DPO training of the policy on labelled preference pairs (TRL 1.16), a TRL-independent reward margin, and the
RewardTrainer run that loop.ml.reward_model builds on.

This is the only module that imports trl; it (and torch/transformers/peft/datasets) is imported lazily inside
the functions so that importing loop.ml.dpo stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from loop.config import TrainDtype, TrainingConfig, check_settings, setting
from storage.errors import PvarLoopError

log = logging.getLogger(__name__)

# Written into every checkpoint so a re-run can recover what produced it (see read_train_result).
TRAIN_META_FILE = "pvar_training.json"


class TrainingError(PvarLoopError, RuntimeError):
    """DPO training or checkpointing failed; the message keeps the underlying library's error."""


@dataclass
class TrainingSettings:
    """Knobs for one DPO run: the [training] keys of loop.config.TrainingConfig that DPO reads, with that
    section's defaults, help text and validation (checked on construction; errors name the bad field).

    dtype "bfloat16" means bf16 autocast (weights stay fp32, checkpoints are saved in fp32); on CPU it runs
    with use_cpu=True and pays off on CPUs with bf16 instructions (avx512_bf16/AMX).
    """

    beta: float = setting(TrainingConfig, "beta")
    learning_rate: float = setting(TrainingConfig, "learning_rate")
    epochs: int = setting(TrainingConfig, "epochs")
    batch_size: int = setting(TrainingConfig, "batch_size")
    gradient_accumulation_steps: int = setting(TrainingConfig, "gradient_accumulation_steps")
    max_length: int = setting(TrainingConfig, "max_length")
    loss_type: str = setting(TrainingConfig, "loss_type")
    lora: bool = setting(TrainingConfig, "lora")
    lora_r: int = setting(TrainingConfig, "lora_r")
    lora_alpha: int = setting(TrainingConfig, "lora_alpha")
    lora_dropout: float = setting(TrainingConfig, "lora_dropout")
    lora_target_modules: str | list[str] = setting(TrainingConfig, "lora_target_modules")
    precompute_ref_log_probs: bool = setting(TrainingConfig, "precompute_ref_log_probs")
    dtype: TrainDtype = setting(TrainingConfig, "dtype")
    seed: int = setting(TrainingConfig, "seed")

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_config(cls, training: TrainingConfig) -> TrainingSettings:
        """The settings a [training] section asks for (its loop-level keys, e.g. warm_start, left out)."""
        return cls(**training.model_dump(include={f.name for f in fields(cls)}))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) for storing alongside a run."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSettings:
        """Inverse of to_dict; unknown keys are an error naming the key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TrainingSettings: unknown key(s) {', '.join(unknown)}")
        return cls(**data)


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


def _load_causal_lm(location: str | os.PathLike, what: str):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(location), dtype="float32")
    except Exception as e:
        raise TrainingError(f"cannot load {what} model from {location}: {e}") from e


def _load_tokenizer(location: str | os.PathLike):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(location))
    except Exception as e:
        raise TrainingError(f"cannot load tokenizer from {location}: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _dpo_config(settings: TrainingSettings, scratch_dir: str):
    import torch
    from trl import DPOConfig

    on_cpu = not torch.cuda.is_available()
    # TRL defaults checkpointing on, which only slows small models down. Recent transformers (5.24) renamed
    # the argument; the old name still works there but warns.
    names = {f.name for f in fields(DPOConfig)}
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    )
    return DPOConfig(
        output_dir=scratch_dir,
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        loss_type=[settings.loss_type],
        precompute_ref_log_probs=settings.precompute_ref_log_probs,
        # TRL defaults bf16=True, which raises on a CPU without use_cpu; fp32 needs bf16=False explicitly.
        bf16=settings.dtype == "bfloat16",
        use_cpu=on_cpu,
        **{checkpointing: False},
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        save_strategy="no",
        disable_tqdm=False,  # a progress bar; the loss is logged every logging_steps (TRL default 10)
    )


def train_dpo(
    pairs: Sequence[PreferencePair],
    *,
    policy_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: TrainingSettings,
) -> TrainResult:
    """Warm-start from policy_dir, DPO-train against reference_dir, save a full checkpoint to output_dir.

    The reference is always reference_dir (the initial policy). No second model copy is loaded when TRL does
    not need one: with LoRA or precompute_ref_log_probs and policy_dir == reference_dir, the reference comes
    from the policy itself (adapters disabled / log-probs computed before the first step); when they differ
    (a warm start), reference_dir is loaded as a separate frozen model. LoRA adapters are merged into the
    weights before saving, so every checkpoint is a plain transformers model.

    The checkpoint is written to a hidden sibling temp dir and renamed into place, so a crash never leaves a
    half-written output_dir (a killed process may leave a hidden ".<name>.partial-*" sibling, safe to delete).
    An existing output_dir is an error (FileExistsError), raised before any training: checkpoints are never
    overwritten; read_train_result recovers what produced an existing one.
    """
    from loop.ml.loading import move_into_place

    pairs = list(pairs)
    if not pairs:
        raise ValueError("train_dpo: no preference pairs given (need at least one)")
    if not isinstance(settings, TrainingSettings):
        raise TypeError(f"train_dpo: settings must be TrainingSettings, got {type(settings).__name__}")
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(
            f"train_dpo: checkpoint directory {output_dir} already exists; not overwriting it"
        )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    data_hash = training_data_hash(pairs)
    dataset = build_preference_dataset(pairs)

    tokenizer = _load_tokenizer(policy_dir)
    model = _load_causal_lm(policy_dir, "policy")
    needs_ref = not (
        (settings.lora or settings.precompute_ref_log_probs) and _same_model(policy_dir, reference_dir)
    )
    ref_model = _load_causal_lm(reference_dir, "reference") if needs_ref else None

    partial = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        trained, steps, loss, seconds = _run_trainer(
            model, ref_model, tokenizer, dataset, settings, str(partial / "trainer")
        )
        shutil.rmtree(partial / "trainer", ignore_errors=True)
        ckpt = partial / "checkpoint"
        try:
            trained.save_pretrained(ckpt)
            tokenizer.save_pretrained(ckpt)
        except Exception as e:
            raise TrainingError(f"cannot save checkpoint for {output_dir}: {e}") from e
        meta = {"steps": steps, "train_loss": loss, "seconds": seconds, "data_hash": data_hash}
        meta |= {"n_pairs": len(pairs), "policy": str(policy_dir), "reference": str(reference_dir)}
        meta["settings"] = settings.to_dict()
        (ckpt / TRAIN_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        move_into_place(ckpt, output_dir, "train_dpo")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return TrainResult(output_dir, steps, loss, seconds, data_hash)


def _run_trainer(model, ref_model, tokenizer, dataset, settings: TrainingSettings, scratch_dir: str):
    """Run DPOTrainer; returns (plain trained model, steps, mean train loss, seconds)."""
    from trl import DPOTrainer

    peft_config = None
    if settings.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=settings.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    try:
        trainer = DPOTrainer(
            model=model,
            ref_model=ref_model,
            args=_dpo_config(settings, scratch_dir),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
    except Exception as e:
        raise TrainingError(f"DPO training failed: {type(e).__name__}: {e}") from e
    steps = int(output.global_step)
    log.info(
        "DPO: %d steps in %.1f s (%.2f s/step), mean loss %.4f",
        steps,
        seconds,
        seconds / max(steps, 1),
        output.training_loss,
    )
    trained = trainer.model
    if settings.lora:
        trained = trained.merge_and_unload()
    return trained, steps, float(output.training_loss), seconds


def read_train_result(checkpoint_dir: str | os.PathLike) -> TrainResult:
    """The TrainResult recorded in a checkpoint written by train_dpo (for idempotent re-runs)."""
    path = Path(checkpoint_dir) / TRAIN_META_FILE
    try:
        meta = json.loads(path.read_text())
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
    from loop.ml.logprobs import completion_logprobs

    prompts = [p.prompt for p in pairs for _ in (0, 1)]
    completions = [c for p in pairs for c in (p.chosen, p.rejected)]
    try:
        policy = completion_logprobs(policy_dir, prompts, completions, batch_size=batch_size)
        reference = completion_logprobs(reference_dir, prompts, completions, batch_size=batch_size)
    except OSError as e:
        raise TrainingError(f"dpo_reward_margin: cannot load a model: {e}") from e
    ratio = policy - reference  # chosen0, rejected0, chosen1, rejected1, ...
    return float(beta * (ratio[0::2] - ratio[1::2]).mean())


def _reward_config(scratch_dir: str, n_train: int, *, learning_rate, epochs, batch_size, bf16, seed):
    import torch
    from trl import RewardConfig

    names = {f.name for f in fields(RewardConfig)}
    # TRL turns checkpointing on by default, which only slows small models; transformers 5.24 renamed it.
    checkpointing = (
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    )
    steps_per_epoch = math.ceil(n_train / batch_size)
    return RewardConfig(
        output_dir=scratch_dir,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        max_length=None,  # callers truncate like RewardScorer; TRL would drop (not truncate) longer pairs
        # TRL defaults bf16=True, which raises on a CPU without use_cpu; fp32 needs bf16=False explicitly.
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        **{checkpointing: False},
        seed=seed,
        data_seed=seed,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, steps_per_epoch),  # one loss/accuracy line per epoch
        disable_tqdm=False,
    )


def run_reward_trainer(
    model, tokenizer, dataset, *, scratch_dir: str, **settings
) -> tuple[Any, int, float, float]:
    """TRL RewardTrainer (Bradley-Terry) on a tokenized chosen/rejected dataset; the reward model's training
    lives in loop.ml.reward_model, which reaches trl only through here. Returns (model, steps, seconds, mean loss).

    settings: learning_rate, epochs, batch_size, bf16 (autocast), seed."""
    from trl import RewardTrainer

    trainer = RewardTrainer(
        model=model,
        args=_reward_config(scratch_dir, len(dataset), **settings),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    start = time.perf_counter()
    output = trainer.train()
    return trainer.model, int(output.global_step), time.perf_counter() - start, float(output.training_loss)
