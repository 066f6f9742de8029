"""Reward scoring with a one-logit sequence classifier (raw logits: PVar needs the unsquashed scale).

Inputs are bucketed by token length before batching, so little compute goes to padding, and the scores come
back in the caller's order. encode_reward_inputs and readable_max_length are also what reward-model training
(loop.ml.reward_model) uses, so a reward model is trained on exactly the inputs it is later scored on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from loop.ml.loading import has_chat_template, load_reward_model, release_memory

log = logging.getLogger(__name__)


def encode_reward_inputs(
    tokenizer: Any, prompts: list[str], responses: list[str], max_length: int
) -> list[list[int]]:
    """Token ids per (prompt, response), as a reward model reads them for scoring and for training.

    The chat-formatted exchange when the tokenizer has a template (it holds the special tokens), truncated at
    max_length; else a text pair, truncated longest-first.
    """
    if has_chat_template(tokenizer):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
            )
            for p, r in zip(prompts, responses, strict=True)
        ]
        enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)
    else:
        enc = tokenizer(prompts, responses, truncation="longest_first", max_length=max_length)
    return enc["input_ids"]


def readable_max_length(model: Any, tokenizer: Any, wanted: int, model_id: str) -> int:
    """max_length lowered (with a warning) to what the model can read: BERT-style position tables end."""
    limits = {"config.max_position_embeddings": getattr(model.config, "max_position_embeddings", None)}
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 1_000_000:  # tokenizers without a limit report ~1e30
        limits["tokenizer.model_max_length"] = tok_max
    known = {name: n for name, n in limits.items() if isinstance(n, int) and n > 0}
    if not known:
        return wanted
    source, limit = min(known.items(), key=lambda item: item[1])
    if wanted <= limit:
        return wanted
    log.warning(
        "reward model %r reads at most %d tokens (%s); max_length %d lowered to %d",
        model_id,
        limit,
        source,
        wanted,
        limit,
    )
    return limit


class RewardScorer:
    """Scores (prompt, response) pairs with AutoModelForSequenceClassification (num_labels=1).

    model_id is the hub id or directory as given; store it with every score so scores from different reward
    models are never mixed.
    """

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        max_length: int = 1024,
        batch_size: int = 16,
        device: str = "cpu",
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id = model
        self.batch_size = batch_size
        self._model, self._tokenizer = load_reward_model(model, dtype, device)
        self.max_length = readable_max_length(self._model, self._tokenizer, max_length, model)

    def _encode(self, prompts: list[str], responses: list[str]) -> list[list[int]]:
        return encode_reward_inputs(self._tokenizer, prompts, responses, self.max_length)

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Raw reward logits, float64, one per (prompt, response) pair, in input order."""
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if self._model is None:
            raise RuntimeError(f"reward scorer for {self.model_id!r} was closed")
        if not prompts:
            return np.zeros(0, dtype=np.float64)
        start = time.perf_counter()
        ids = self._encode(prompts, responses)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        scores = np.empty(len(ids), dtype=np.float64)
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            scores[idx] = self._forward([ids[i] for i in idx])
        elapsed = time.perf_counter() - start
        # DEBUG: score_pool reports throughput (progress bar, summary); a line per call would flood INFO.
        log.debug(
            "scored %d pairs in %.2f s (%.0f pairs/s)", len(ids), elapsed, len(ids) / max(elapsed, 1e-9)
        )
        return scores

    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        import torch

        width = max(len(r) for r in rows)
        pad = self._tokenizer.pad_token_id
        # Right padding: BERT-style models read position 0, Llama-style ones the last non-pad token.
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        with torch.inference_mode():
            logits = self._model(
                input_ids=input_ids.to(self._model.device), attention_mask=mask.to(self._model.device)
            ).logits
        return logits[:, 0].float().cpu().numpy().astype(np.float64)

    def close(self) -> None:
        """Drop the model so its memory can be reclaimed."""
        self._model = self._tokenizer = None
        release_memory()
