"""Reward-model training and reward scoring read a (prompt, response) pair as the same token ids: the model is
trained on exactly the inputs selection later scores it on, with and without a chat template."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loop.ml.dpo import PreferencePair
from loop.ml.loading import has_chat_template, load_reward_base
from loop.ml.reward_model import reward_training_dataset
from loop.ml.rewards import RewardScorer

PAIRS = [
    PreferencePair(f"Question {i}: what does {word} mean?", f"{word} is a word " * (i + 1), "I cannot say.")
    for i, word in enumerate(["river", "stone", "garden", "window", "letter"])
]
MAX_LENGTH = 24  # short: the longer responses do not fit


def _without_chat_template(model_dir: Path, out: Path) -> Path:
    """A copy of model_dir whose tokenizer has no chat template (encoders such as MiniLM have none)."""
    from transformers import AutoTokenizer

    shutil.copytree(model_dir, out)
    for leftover in out.glob("*.jinja"):
        leftover.unlink()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.parametrize("template", [True, False], ids=["chat-template", "text-pair"])
def test_training_encodes_pairs_exactly_as_scoring_does(tiny_models, tmp_path, template):
    model_dir = (
        tiny_models.reward_dir
        if template
        else _without_chat_template(tiny_models.reward_dir, tmp_path / "rm")
    )
    _, tokenizer = load_reward_base(model_dir, seed=0)  # the tokenizer training encodes with
    assert has_chat_template(tokenizer) == template
    dataset = reward_training_dataset(tokenizer, PAIRS, MAX_LENGTH)
    scorer = RewardScorer(str(model_dir), max_length=MAX_LENGTH)
    try:
        prompts = [p.prompt for p in PAIRS]
        chosen = scorer._encode(prompts, [p.chosen for p in PAIRS])
        rejected = scorer._encode(prompts, [p.rejected for p in PAIRS])
    finally:
        scorer.close()
    # Pairs with an answer too long to read whole are left out of training, as scoring leaves them out.
    readable = [(c, r) for c, r in zip(chosen, rejected, strict=True) if c is not None and r is not None]
    assert 0 < len(readable) < len(PAIRS)
    assert dataset["chosen_ids"] == [c for c, _ in readable]
    assert dataset["rejected_ids"] == [r for _, r in readable]
    assert max(len(ids) for ids, _ in readable) <= MAX_LENGTH
    assert len({tuple(ids) for ids, _ in readable}) == len(readable)
