"""The model-card recipe for scoring one conversation with a reward model, written from
/work/shared/notes/reward-models.md and independent of loop.ml.rewards: the reference RewardScorer must match."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
