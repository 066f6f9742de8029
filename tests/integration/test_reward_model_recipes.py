"""RewardScorer scores every conversation exactly as the reward model's card says to score it alone.

The reference below is written from the model-card recipe (/work/shared/notes/reward-models.md), not from the
scorer: render [user, assistant] with the RM's OWN chat template (no system prompt added), drop the leading BOS
text so the tokenizer's own BOS is the only one, tokenize, run a batch of one through the model's forward and
take the raw logit. The scorer batches, pads and buckets by length; each row must still match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loop.ml.rewards import RewardScorer

# Different lengths (so batches are padded), surrounding whitespace (Llama's template trims), a multi-line
# answer, a one-character exchange.
PROMPTS = [
    "Hello there",
    "What is the difference between a list and a tuple in Python?",
    "x",
    "Explain how a dictionary stores its keys, and why lookups are fast on average.",
    "Name a prime number.",
    "  Sort these words: pear, apple, fig.  ",
    "Write two lines about the sea.",
    "Why is the sky blue?",
    "ok",
]
RESPONSES = [
    "Hi! How can I help?",
    "A list is mutable; a tuple is not.",
    "y",
    "It hashes each key to a slot in a table, so finding a key takes constant time on average.",
    "Seven.",
    "apple, fig, pear\n",
    "The sea is wide.\nThe sea is deep.",
    "Sunlight scatters off the air's molecules, and blue light scatters the most.",
    "Fine.",
]


def model_card_scores(model_dir: Path, prompts: list[str], responses: list[str]) -> tuple[np.ndarray, list]:
    """The recipe, one conversation at a time: (raw logits, token ids the model read)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    scores, inputs = [], []
    for prompt, response in zip(prompts, responses, strict=True):
        conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        text = tokenizer.apply_chat_template(conversation, tokenize=False)
        if tokenizer.bos_token is not None and text.startswith(tokenizer.bos_token):
            text = text[len(tokenizer.bos_token) :]  # the tokenizer adds its own
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            scores.append(model(input_ids=ids).logits[0][0].item())
        inputs.append(ids[0].tolist())
    return np.array(scores), inputs


@pytest.fixture(scope="module")
def reference(chat_reward_models):
    return {name: model_card_scores(rm.path, PROMPTS, RESPONSES) for name, rm in chat_reward_models.items()}


VARIANTS = [
    "llama3-nopad-config-right",
    "llama3-nopad-config-left",
    "llama3-eos-pad-config-left",
    "llama3-eos-pad-config-right",
    "qwen-endoftext-pad-right",
    "qwen-endoftext-pad-left",
    "qwen-eos-pad-left",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_scores_equal_the_model_card_recipe(chat_reward_models, reference, variant):
    rm = chat_reward_models[variant]
    expected, inputs = reference[variant]
    scorer = RewardScorer(str(rm.path), max_length=512, batch_size=4)
    try:
        scores = scorer.score(PROMPTS, RESPONSES)
        # The scorer's token ids are the recipe's: exactly one BOS for Llama, none for Qwen.
        assert scorer._encode(PROMPTS, RESPONSES) == inputs
    finally:
        scorer.close()
    bos = 1 if rm.family == "llama3" else 0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rm.path)
    assert (
        all(ids.count(tokenizer.bos_token_id) == bos for ids in inputs)
        if bos
        else tokenizer.bos_token is None
    )
    if rm.family == "llama3":
        # The case that breaks a "first pad token" lookup: every conversation ends with the pad token.
        assert all(ids[-1] == tokenizer.pad_token_id for ids in inputs)
    np.testing.assert_allclose(scores, expected, atol=1e-4, rtol=0)
    assert len(np.unique(np.round(expected, 5))) == len(PROMPTS)  # distinct inputs, distinct scores
