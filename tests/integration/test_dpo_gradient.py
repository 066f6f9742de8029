"""The DPO gradient norm at the initial policy, on a tiny real model, against gradients taken one sequence at a
time (no padding, no batching)."""

from __future__ import annotations

import numpy as np
import pytest

from loop.ml.dpo_gradient import initial_gradient_norms


def _separate_norm(model_dir, prompt: str, chosen: str, rejected: str, beta: float) -> float:
    import torch

    from loop.ml.loading import load_causal_lm, load_tokenizer
    from loop.ml.logprobs import _render

    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir).eval()
    grads = []
    for text in (chosen, rejected):
        ids, start = _render(tok, prompt, text)
        x = torch.tensor([ids])
        logps = torch.log_softmax(model(input_ids=x).logits.float()[0, :-1], dim=-1)
        lp = logps[torch.arange(start - 1, len(ids) - 1), x[0, start:]].sum()
        grads.append(torch.autograd.grad(lp, list(model.parameters()), allow_unused=True))
    sq = sum(float(((a - b) ** 2).sum()) for a, b in zip(*grads, strict=True) if a is not None)
    return beta / 2 * np.sqrt(sq)


def test_gradient_norm_is_half_beta_times_the_log_prob_gradient_gap(tiny_models) -> None:
    d = tiny_models.policy_dir
    prompts = ["Name a colour.", "Name a colour.", "Say hi in two words."]
    chosen = ["Blue.", "Red, obviously.", "Hello there."]
    rejected = ["Red, obviously.", "Red, obviously.", "Hi."]
    norms = initial_gradient_norms(d, prompts, chosen, rejected, beta=0.1)
    assert norms[1] == 0.0  # the same response twice: no signal, like a tie
    assert norms[0] > 0 and norms[2] > 0
    assert norms[0] == pytest.approx(_separate_norm(d, prompts[0], chosen[0], rejected[0], 0.1), rel=1e-4)
    swapped = initial_gradient_norms(d, prompts[:1], rejected[:1], chosen[:1], beta=0.2)
    assert swapped[0] == pytest.approx(2 * norms[0], rel=1e-6)  # orientation-free, linear in beta
    with pytest.raises(ValueError, match="beta"):
        initial_gradient_norms(d, prompts, chosen, rejected, beta=0.0)
