"""Two speed-ups for sampling K responses per prompt with transformers' generate(), same distribution as before.

- generate_shared_prefill: each prompt goes through the model once and its KV cache is copied K times,
  instead of repeating the prompt K times before the prefill.
- TemperatureTopP: temperature + top-p as transformers' own warpers compute them, without sorting the whole
  vocabulary for every row at every step (that sort was ~30% of batched CPU generation time).

Imported only by the transformers backend when it generates: this module imports torch and transformers.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache, LogitsProcessor
from transformers.generation.logits_process import TopPLogitsWarper


def generate_shared_prefill(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int, **generate_kwargs: Any
) -> torch.Tensor:
    """model.generate(..., num_return_sequences=k) for a left-padded batch, prefilling each prompt once.

    All but the last prompt column go through the model once per prompt; the KV cache is then repeated k
    times and generate() continues from it: it runs the last prompt token for all k copies, so the first new
    token is drawn from logits that see the whole prompt, and it draws from the torch RNG exactly as the
    plain call (same rows, same order). Position ids follow the padding as generate() derives them. Returns
    the same (batch * k, prompt + new) token ids; models whose cache cannot be shared take the plain path.
    """
    params = inspect.signature(model.forward).parameters
    # transformers 5.20 renamed forward's and generate's past_key_values to cache.
    cache_arg = next((name for name in ("cache", "past_key_values") if name in params), None)
    cache_impl = getattr(model.generation_config, "cache_implementation", None)
    if k == 1 or input_ids.shape[1] < 2 or cache_arg is None or cache_impl not in (None, "dynamic"):
        return model.generate(
            input_ids=input_ids, attention_mask=attention_mask, num_return_sequences=k, **generate_kwargs
        )
    prefix_mask = attention_mask[:, :-1]
    # As generate() derives them: pad slots get 0 (they are masked out anyway).
    positions = (prefix_mask.long().cumsum(-1) - 1).masked_fill(prefix_mask == 0, 0)
    cache = DynamicCache(config=model.config)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}  # the prefix logits are not used
    with torch.inference_mode():
        model(
            input_ids=input_ids[:, :-1],
            attention_mask=prefix_mask,
            position_ids=positions,
            use_cache=True,
            **{cache_arg: cache},
            **extra,
        )
    cache.batch_repeat_interleave(k)
    return model.generate(
        input_ids=input_ids.repeat_interleave(k, dim=0),
        attention_mask=attention_mask.repeat_interleave(k, dim=0),
        **{cache_arg: cache},
        **generate_kwargs,
    )


class TemperatureTopP(LogitsProcessor):
    """scores / temperature, then top-p (nucleus) filtering, as TemperatureLogitsWarper + TopPLogitsWarper.

    transformers' top-p sorts all V logits of every row; here the top `candidates` of each row are found with
    topk and their probabilities (against the full softmax normaliser) decide which of them stay. A row whose
    candidates hold less than top_p of the mass goes through transformers' own warper instead, so every row
    keeps exactly the tokens whose larger-probability mass is below top_p (plus the most likely one), and so
    do rows with tied logits across the cut (common with bf16 logits), whose pick depends on that sort's order.
    Pass it to generate() with temperature=1.0 and top_p=1.0 (custom processors run before the warpers).
    """

    def __init__(self, temperature: float, top_p: float, candidates: int = 256) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature, self.top_p, self.candidates = temperature, top_p, candidates
        self._full = TopPLogitsWarper(top_p=top_p)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.temperature != 1.0:
            scores = scores / self.temperature  # the exact op of TemperatureLogitsWarper
        if self.top_p >= 1.0:
            return scores
        top, idx = scores.topk(min(self.candidates, scores.shape[-1]), dim=-1)  # descending
        probs = (top - scores.logsumexp(dim=-1, keepdim=True)).exp()
        # transformers drops a token when the mass at or below it (ascending cumsum) is <= 1 - top_p.
        mass_above = probs.cumsum(dim=-1) - probs
        drop = (1 - mass_above) <= (1 - self.top_p)
        drop[:, 0] = False  # min_tokens_to_keep=1
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, idx, top.masked_fill(drop, float("-inf")))
        # Left to the full sort: rows whose best non-candidate would survive or that keep every candidate,
        # and rows with a tie across the cut, which transformers breaks by its (unstable) sort order.
        kept = (~drop).sum(dim=-1, keepdim=True)
        m = top.shape[-1]
        tie = top.gather(-1, kept - 1) == top.gather(-1, kept.clamp(max=m - 1))
        undecided = ((1 - probs.sum(dim=-1)) > (1 - self.top_p)) | (kept.squeeze(-1) == m) | tie.squeeze(-1)
        if undecided.any():
            rows = undecided.nonzero().squeeze(-1)
            out[rows] = self._full(input_ids[rows], scores[rows])
        return out
