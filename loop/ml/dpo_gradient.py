"""The norm of the DPO gradient a labelled pair gives at the initial policy (the quantity the PVar paper's theorem
bounds), by plain forward and backward passes.

At the start the policy is its own reference, so both implicit rewards are 0 and the DPO loss
-log sigmoid(beta * (d_chosen - d_rejected)) has gradient -(beta / 2) * (grad log pi(chosen) - grad log pi(rejected)):
its norm does not depend on which side was chosen, and a tie (dropped by DPO) gives 0. The norm is over every
parameter of the model (LoRA's B matrices start at 0, which would make the adapter's gradient degenerate).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def initial_gradient_norms(
    model_dir: str | os.PathLike,
    prompts: Sequence[str],
    chosen: Sequence[str],
    rejected: Sequence[str],
    *,
    beta: float,
) -> np.ndarray:
    """||grad of the DPO loss at the initial policy|| for each (prompt, chosen, rejected), float64."""
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(
            f"initial_gradient_norms: {len(prompts)} prompts, {len(chosen)} chosen, {len(rejected)} rejected"
        )
    if beta <= 0:
        raise ValueError(f"initial_gradient_norms: beta must be > 0, got {beta}")
    if not prompts:
        return np.zeros(0, dtype=np.float64)
    import torch

    from loop.ml.loading import has_chat_template, load_causal_lm, load_tokenizer
    from loop.ml.logprobs import _render, _token_logps

    tokenizer = load_tokenizer(model_dir)
    if not has_chat_template(tokenizer):
        raise ValueError(f"initial_gradient_norms: tokenizer of {model_dir} has no chat template")
    model = load_causal_lm(model_dir).eval()  # eval: no dropout, the gradient of the policy as sampled
    params = [p for p in model.parameters() if p.requires_grad]
    out = np.empty(len(prompts), dtype=np.float64)
    for i, (prompt, a, b) in enumerate(zip(prompts, chosen, rejected, strict=True)):
        if a == b:
            out[i] = 0.0
            continue
        model.zero_grad(set_to_none=True)
        batch = [_render(tokenizer, prompt, a), _render(tokenizer, prompt, b)]
        logps = _token_logps(model, batch, tokenizer.pad_token_id)
        (logps[0] - logps[1]).backward()
        sq = sum(float(torch.sum(p.grad.double() ** 2)) for p in params if p.grad is not None)
        out[i] = beta / 2.0 * np.sqrt(sq)
    model.zero_grad(set_to_none=True)
    return out
