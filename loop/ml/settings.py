"""The knobs of one training run, DPO or reward model: dataclasses whose defaults, help text and validation
are the config's (loop.config), so the trainers and the TOML file cannot disagree."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from loop.config import (
    RewardConfig,
    RewardTrainingConfig,
    TrainDtype,
    TrainingConfig,
    check_settings,
    setting,
)


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

    @property
    def precompute_here(self) -> bool:
        """precompute_ref_log_probs where it works: TRL 1.16 writes the precomputed log-probs to the cache file
        of an in-memory dataset that only the writing process can open, so under a multi-process launch
        (WORLD_SIZE > 1) the other ranks fail to read it; there the reference runs in every step."""
        return self.precompute_ref_log_probs and int(os.environ.get("WORLD_SIZE", "1")) == 1

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


@dataclass
class RewardTrainSettings:
    """Knobs for one reward-model run, with the defaults, help text and validation of the config keys that
    `pvar-loop reward-model train` reads them from (checked on construction; errors name the bad field).

    batch_size and max_length are [reward]'s: pairs are fitted into max_length tokens the way RewardScorer
    fits them at scoring time (the prompt loses its start; a pair with a response too long is left out). dtype "bfloat16" is bf16 autocast (weights and checkpoint
    stay fp32); it takes [training] dtype's values, and the CLI derives it from [reward] dtype.
    """

    learning_rate: float = setting(RewardTrainingConfig, "learning_rate")
    epochs: int = setting(RewardTrainingConfig, "epochs")
    batch_size: int = setting(RewardConfig, "batch_size")
    max_length: int = setting(RewardConfig, "max_length")
    dtype: TrainDtype = setting(TrainingConfig, "dtype")
    heldout_fraction: float = setting(RewardTrainingConfig, "heldout_fraction")
    seed: int = setting(RewardTrainingConfig, "seed")

    def __post_init__(self) -> None:
        check_settings(self)
