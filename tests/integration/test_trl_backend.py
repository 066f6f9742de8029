"""Both TRL runners (DPO and reward model) hand back one TrainerRun: the trained model and how the run went."""

from __future__ import annotations

import math

import pytest
import torch

from loop.ml.dpo import PreferencePair, build_preference_dataset
from loop.ml.loading import load_causal_lm, load_reward_base, load_tokenizer
from loop.ml.reward_model import reward_training_dataset
from loop.ml.settings import RewardTrainSettings, TrainingSettings
from loop.ml.trl_backend import TrainerRun, run_dpo_trainer, run_reward_trainer

PAIRS = [
    PreferencePair(f"Question {i}: name a colour.", f"Colour number {i} is blue.", "No idea.")
    for i in range(4)
]


def _moved(before: dict[str, torch.Tensor], model) -> bool:
    return any(not torch.equal(before[name], p.detach()) for name, p in model.named_parameters())


def test_dpo_runner_returns_a_trainer_run(tiny_models, tmp_path):
    tokenizer = load_tokenizer(tiny_models.policy_dir)
    model = load_causal_lm(tiny_models.policy_dir)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    settings = TrainingSettings(learning_rate=5e-5, epochs=1, batch_size=4)
    run = run_dpo_trainer(
        model,
        load_causal_lm(tiny_models.policy_dir),
        tokenizer,
        build_preference_dataset(PAIRS),
        settings,
        output_dir=str(tmp_path / "dpo"),
    )
    assert isinstance(run, TrainerRun)
    assert run.steps == 1 and math.isfinite(run.train_loss) and run.seconds > 0
    assert _moved(before, run.model)


def test_reward_runner_returns_a_trainer_run(tiny_models, tmp_path):
    model, tokenizer = load_reward_base(tiny_models.reward_dir, seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    run = run_reward_trainer(
        model,
        tokenizer,
        reward_training_dataset(tokenizer, PAIRS, 64),
        RewardTrainSettings(learning_rate=1e-3, epochs=2, batch_size=4),
        output_dir=str(tmp_path / "rm"),
    )
    assert isinstance(run, TrainerRun)
    assert run.steps == 2 and math.isfinite(run.train_loss) and run.seconds > 0
    assert _moved(before, run.model)


def _perturbed_copy(model_dir, out_dir, scale: float = 0.05):
    """The model with seeded noise on every weight: a policy that differs from its reference, so the DPO loss
    of a batch is not log 2."""
    tokenizer, model = load_tokenizer(model_dir), load_causal_lm(model_dir)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def test_the_fast_dpo_path_keeps_the_loss_of_a_fixed_batch(tiny_models, tmp_path, monkeypatch):
    """Issue 21: the LM head projected at completion positions only, and the reference's log-probs computed once
    before training, give the loss TRL's stock path gives (every position projected, the reference run inside
    the step), in bf16 autocast: one step over one fixed batch, its loss recorded before the update."""
    from loop.ml import trl_backend

    policy_dir = _perturbed_copy(tiny_models.policy_dir, tmp_path / "policy")
    pairs = [
        PreferencePair(f"Question {i}: name a colour.", f"Colour number {i} is blue, like the sky.", "No.")
        for i in range(6)
    ]
    tokenizer = load_tokenizer(policy_dir)

    def one_step_loss(precompute: bool) -> float:
        settings = TrainingSettings(
            learning_rate=1e-4, epochs=1, batch_size=len(pairs), lora=True, lora_dropout=0.0,
            dtype="bfloat16", precompute_ref_log_probs=precompute,
        )  # fmt: skip
        run = run_dpo_trainer(
            load_causal_lm(policy_dir),
            load_causal_lm(tiny_models.policy_dir),
            tokenizer,
            build_preference_dataset(pairs),
            settings,
            output_dir=str(tmp_path / f"dpo-{precompute}"),
        )
        assert run.steps == 1
        return run.train_loss

    monkeypatch.setattr(trl_backend, "COMPACT_LM_HEAD", False)
    stock = one_step_loss(precompute=False)
    monkeypatch.setattr(trl_backend, "COMPACT_LM_HEAD", True)
    fast = one_step_loss(precompute=True)
    assert abs(stock - math.log(2)) > 0.02  # the batch says something: policy and reference differ
    assert fast == pytest.approx(stock, abs=2e-3)
