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
    """Issue 21: the LM head projected at completion positions only, the reference's log-probs computed once
    before training, and the batch run in sub-batches of similar length with eager attention on CPU give the
    loss TRL's stock path gives (every position projected, the reference run inside the step, one padded call),
    in bf16 autocast: one step over one fixed batch, its loss recorded before the update."""
    from loop.ml import trl_backend

    policy_dir = _perturbed_copy(tiny_models.policy_dir, tmp_path / "policy")
    long_answer = "is blue, like the sky over the sea on a clear summer morning, and like nothing else at all"
    pairs = [
        PreferencePair(f"Question {i}: name a colour.", f"Colour number {i} {long_answer}.", "No.")
        for i in range(6)
    ]
    tokenizer = load_tokenizer(policy_dir)
    from loop.ml import length_groups

    splits: list[int] = []
    grouping = length_groups.length_groups

    def counted(lengths, *args, **kwargs):
        groups = grouping(lengths, *args, **kwargs)
        splits.append(len(groups))
        return groups

    monkeypatch.setattr(length_groups, "length_groups", counted)

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

    fast_paths = ("COMPACT_LM_HEAD", "LENGTH_GROUPS", "SKIP_REFERENCE_HASH")
    for name in fast_paths:
        monkeypatch.setattr(trl_backend, name, False)
    stock = one_step_loss(precompute=False)
    for name in fast_paths:
        monkeypatch.setattr(trl_backend, name, True)
    fast = one_step_loss(precompute=True)
    assert abs(stock - math.log(2)) > 0.02  # the batch says something: policy and reference differ
    assert splits and max(splits) > 1  # the fast path ran the batch as sub-batches
    assert fast == pytest.approx(stock, abs=2e-3)


def test_length_grouped_forward_gives_the_log_probs_and_gradients_of_one_call(tiny_models):
    """Issue 21: a batch's rows run in sub-batches of similar length (trimmed padding) give each row the per-token
    log-probs and the LoRA gradients that one call over the padded batch gives (fp32, no dropout)."""
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    from loop.ml.length_groups import GroupedForward, length_groups

    model = load_causal_lm(tiny_models.policy_dir)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear")
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LoRA B starts at 0: give the adapter a gradient path that is not degenerate
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    model.train()
    lengths = [60, 58, 61, 6, 9, 5]  # chosen then rejected, as TRL stacks them
    assert len(length_groups(lengths)) == 2  # the call below is split
    width = max(lengths)
    ids = torch.randint(3, 200, (len(lengths), width), generator=gen)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100  # the prompt
    call = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "use_cache": False,
        "fused_lm_head": True,
    }

    def run(forward):
        model.zero_grad(set_to_none=True)
        out = forward(**call)
        weights = torch.linspace(1.0, 2.0, len(lengths))[:, None]  # rows weigh differently: order matters
        (out.log_probs * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out, grads

    whole, whole_grads = run(model)
    assert model.config._attn_implementation == "sdpa"
    grouped, grouped_grads = run(GroupedForward(model))
    assert model.config._attn_implementation == "sdpa"  # eager only during the calls (on CPU)
    assert grouped.log_probs.shape == whole.log_probs.shape
    torch.testing.assert_close(grouped.log_probs, whole.log_probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        grouped.entropy * grouped.label_mask, whole.entropy * whole.label_mask, atol=1e-5, rtol=1e-5
    )
    assert torch.equal(grouped.label_mask, whole.label_mask)
    assert whole_grads.keys() == grouped_grads.keys() and whole_grads
    for name, g in whole_grads.items():
        torch.testing.assert_close(grouped_grads[name], g, atol=1e-5, rtol=1e-4, msg=name)
