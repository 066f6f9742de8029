"""The one module that imports trl (1.16): building DPOConfig / RewardConfig and running the two trainers.

Callers (loop.ml.dpo, loop.ml.reward_model) prepare models and datasets and publish the checkpoint; here the
TRL-specific knobs are set and every run comes back as one TrainerRun. trl, torch and peft are imported inside
the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loop.ml.settings import RewardTrainSettings, TrainingSettings

log = logging.getLogger(__name__)

# DPO scores the LM head only at completion positions (see _compact_lm_head), runs a batch's sequences in a few
# sub-batches of similar length (loop/ml/length_groups.py) and skips TRL's hash of the reference weights
# (_no_reference_hash); benchmarks/dpo_speed.py turns these off to time TRL's stock path beside them.
COMPACT_LM_HEAD = True
LENGTH_GROUPS = True
SKIP_REFERENCE_HASH = True


@dataclass(frozen=True)
class TrainerRun:
    """What a trainer run returns: the trained (plain, LoRA-merged) model and how the run went."""

    model: Any
    steps: int
    train_loss: float
    seconds: float


def _checkpointing_off(config_cls: type) -> dict[str, bool]:
    """TRL turns activation checkpointing on by default, which only slows small models down; transformers 5.24
    renamed the argument (the old name still works there but warns)."""
    names = {f.name for f in fields(config_cls)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {name: False}


def _common_args(output_dir: str, *, bf16: bool, seed: int) -> dict[str, Any]:
    """Arguments both trainer configs take the same way."""
    import torch

    return {
        "output_dir": output_dir,
        # TRL defaults bf16=True, which raises on a CPU without use_cpu; fp32 needs bf16=False explicitly.
        "bf16": bf16,
        "use_cpu": not torch.cuda.is_available(),
        "seed": seed,
        "data_seed": seed,
        "report_to": "none",
        "save_strategy": "no",
        # The Trainer's own bar and metrics dict are replaced by _QuietTrainerOutput (see _train).
        "disable_tqdm": True,
    }


def dpo_config(settings: TrainingSettings, output_dir: str):
    """DPOConfig for one run; the loss is logged every logging_steps (TRL default 10)."""
    from trl import DPOConfig

    return DPOConfig(
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        loss_type=[settings.loss_type],
        precompute_ref_log_probs=settings.precompute_here,
        **_checkpointing_off(DPOConfig),
        **_common_args(output_dir, bf16=settings.dtype == "bfloat16", seed=settings.seed),
    )


def _lora_config(settings: TrainingSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_target_modules,
        task_type="CAUSAL_LM",
    )


@contextmanager
def _compact_lm_head() -> Iterator[None]:
    """While open, TRL's fused LM head projects only the positions that have a label (the completions) on CPU too.

    TRL 1.16 does that only where Triton runs (elsewhere, e.g. on Neuron, a varying row count would recompile) and
    on CPU projects every position, prompt and padding included, onto the 49k-token vocabulary: a third of a
    SmolLM2 DPO step. The positions it skips have label -100 and are zeroed either way, so the log-probs and the
    loss are the same (tests/integration/test_trl_backend.py). The kernel itself still picks its torch path, which
    reads chunked_logprob's own _use_triton, not the trainer utilities' name patched here.
    """
    import trl.trainer.utils as trl_utils

    stock = getattr(trl_utils, "_use_triton", None)
    if not COMPACT_LM_HEAD or stock is None:  # a TRL without the name: its stock path, unchanged
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or stock(device)
    try:
        yield
    finally:
        trl_utils._use_triton = stock


@contextmanager
def _no_reference_hash() -> Iterator[None]:
    """While open, DPOTrainer does not SHA-256 the reference's weights (half a GB for SmolLM2-135M, about 2 s a run).

    TRL 1.16 hashes them only to name a cache file of precomputed reference log-probs, and for an in-memory dataset
    (ours, built per run) it names that file at random anyway, so the hash is never used; a fresh random token in
    its place means a dataset on disk recomputes instead of reusing a cache (never a stale one)."""
    import uuid

    import trl.trainer.dpo_trainer as trl_dpo

    stock = getattr(trl_dpo, "hash_module", None)
    if not SKIP_REFERENCE_HASH or stock is None:
        yield
        return
    trl_dpo.hash_module = lambda _module: uuid.uuid4().hex
    try:
        yield
    finally:
        trl_dpo.hash_module = stock


def _dpo_trainer_class():
    """DPOTrainer, or with LENGTH_GROUPS a subclass whose policy and reference forwards run the batch's chosen and
    rejected sequences in sub-batches of similar length (the same log-probs, less padding)."""
    from trl import DPOTrainer

    if not LENGTH_GROUPS:
        return DPOTrainer
    from loop.ml.length_groups import GroupedForward

    class LengthGroupedDPOTrainer(DPOTrainer):
        # One process only: DistributedDataParallel allows one forward per backward, and a group is a forward.
        def _compute_loss(self, model, inputs, return_outputs):
            grouped = GroupedForward(model) if self.accelerator.num_processes == 1 else model
            return super()._compute_loss(grouped, inputs, return_outputs)

        def compute_ref_log_probs(self, model, inputs):
            grouped = GroupedForward(model) if self.accelerator.num_processes == 1 else model
            return super().compute_ref_log_probs(grouped, inputs)

    return LengthGroupedDPOTrainer


def run_dpo_trainer(
    model, ref_model, tokenizer, dataset, settings: TrainingSettings, *, output_dir: str
) -> TrainerRun:
    """DPOTrainer on a conversational preference dataset; LoRA adapters are merged into the returned model.

    The trainer is built inside _compact_lm_head too: precomputed reference log-probs are computed there."""
    start = time.perf_counter()  # precomputed reference log-probs are part of the run's time
    with _compact_lm_head(), _no_reference_hash():
        trainer = _dpo_trainer_class()(
            model=model,
            ref_model=ref_model,
            args=dpo_config(settings, output_dir),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=_lora_config(settings) if settings.lora else None,
        )
        run = _train(trainer, "DPO", start)
    if settings.lora:
        return TrainerRun(run.model.merge_and_unload(), run.steps, run.train_loss, run.seconds)
    return run


def reward_config(settings: RewardTrainSettings, output_dir: str, n_train: int):
    """RewardConfig for one run on n_train pairs: one loss/accuracy log line per epoch."""
    from trl import RewardConfig

    return RewardConfig(
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        max_length=None,  # callers fit pairs into [reward] max_length as RewardScorer does (encode_reward_inputs)
        logging_steps=max(1, math.ceil(n_train / settings.batch_size)),
        **_checkpointing_off(RewardConfig),
        **_common_args(output_dir, bf16=settings.dtype == "bfloat16", seed=settings.seed),
    )


def run_reward_trainer(
    model, tokenizer, dataset, settings: RewardTrainSettings, *, output_dir: str
) -> TrainerRun:
    """RewardTrainer (Bradley-Terry) on a dataset already tokenized into chosen_ids/rejected_ids."""
    from trl import RewardTrainer

    trainer = RewardTrainer(
        model=model,
        args=reward_config(settings, output_dir, len(dataset)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return _train(trainer, "reward model")


def _quiet_trainer_output(trainer, what: str) -> None:
    """The Trainer prints its metrics dict to stdout (PrinterCallback, or ProgressCallback's bar): the
    metrics go to DEBUG instead, and the steps to our progress (a bar on a terminal, else a line every 30 s)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from loop.progress import progress

    class QuietTrainerOutput(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = progress(state.max_steps, what, "step")

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            log.debug("%s step %d: %s", what, state.global_step, logs)

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(QuietTrainerOutput())


def _train(trainer, what: str, start: float | None = None) -> TrainerRun:
    _quiet_trainer_output(trainer, what)
    start = time.perf_counter() if start is None else start
    output = trainer.train()
    seconds = time.perf_counter() - start
    steps, loss = int(output.global_step), float(output.training_loss)
    log.info(
        "%s: %d steps in %.1f s (%.2f s/step), mean loss %.4f",
        what,
        steps,
        seconds,
        seconds / max(steps, 1),
        loss,
    )
    return TrainerRun(trainer.model, steps, loss, seconds)
