"""Both TRL runners (DPO and reward model) hand back one TrainerRun: the trained model and how the run went."""

from __future__ import annotations

import math

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
