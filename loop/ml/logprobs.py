"""log pi(response | prompt) under a causal LM, with the chat template, computed by plain forward passes.

This is what DPO's implicit reward is built from: the sum of the response tokens' log-probabilities, with the
exchange rendered by the tokenizer's chat template exactly as DPO training sees it. Kept free of TRL so tests
can check what training did with an independent computation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def completion_logprobs(
    model_dir: str | os.PathLike,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    batch_size: int = 16,
) -> np.ndarray:
    """log p(completion_i | prompt_i) for each i, float64, summed over the completion's tokens."""
    if len(prompts) != len(completions):
        raise ValueError(f"completion_logprobs: {len(prompts)} prompts but {len(completions)} completions")
    if batch_size < 1:
        raise ValueError(f"completion_logprobs: batch_size must be >= 1, got {batch_size}")
    if not prompts:
        return np.zeros(0, dtype=np.float64)
    import torch

    from loop.ml.loading import has_chat_template, load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model_dir)  # pads with EOS when the model has no pad token
    if not has_chat_template(tokenizer):
        raise ValueError(f"completion_logprobs: tokenizer of {model_dir} has no chat template")
    pad_id = tokenizer.pad_token_id
    sequences = [_render(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
    model = load_causal_lm(model_dir).eval()
    # Length-sorted batches waste little compute on padding; results go back in input order.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    out = np.empty(len(sequences), dtype=np.float64)
    with torch.inference_mode():
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            out[idx] = _batch_logprobs(model, [sequences[i] for i in idx], pad_id)
    return out


def _render(tokenizer, prompt: str, completion: str) -> tuple[list[int], int]:
    """(token ids of the whole exchange, index of the first completion token)."""
    user = [{"role": "user", "content": prompt}]
    prompt_ids = _chat_ids(tokenizer, user, add_generation_prompt=True)
    full_ids = _chat_ids(tokenizer, [*user, {"role": "assistant", "content": completion}])
    # The completion starts where the two renderings first differ (tokens can merge across the boundary).
    start = 0
    for a, b in zip(prompt_ids, full_ids, strict=False):
        if a != b:
            break
        start += 1
    return full_ids, max(start, 1)  # the first token has no prediction to score


def _chat_ids(tokenizer, messages, **kwargs) -> list[int]:
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
    return list(encoded["input_ids"])


def _batch_logprobs(model, batch: list[tuple[list[int], int]], pad_id: int) -> np.ndarray:
    return _token_logps(model, batch, pad_id).double().numpy()


def _token_logps(model, batch: list[tuple[list[int], int]], pad_id: int):
    """Summed completion log-probabilities as a torch tensor (differentiable outside inference mode)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, (ids, start) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1  # right padding: real tokens keep positions 0..len-1
        scored[row, start : len(ids)] = True
    logits = model(input_ids=input_ids, attention_mask=attention).logits.float()
    token_logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1))
    return (token_logps.squeeze(-1) * scored[:, 1:]).sum(dim=-1)
