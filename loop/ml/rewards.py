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
) -> list[list[int] | None]:
    """Token ids per (prompt, response), as a reward model reads them for scoring and for training.

    The chat-formatted exchange when the tokenizer has a template (it holds the special tokens, BOS included),
    else a text pair. A decoder RM reads the end, so an input over max_length loses the START of its prompt;
    the whole response and the template's closing tokens are kept. None where the response alone (with an
    empty prompt) does not fit: such an answer is never scored cut off.
    """
    ids = _render_all(tokenizer, prompts, responses)
    return [
        row if len(row) <= max_length else _cut_prompt(tokenizer, p, r, row, max_length)
        for p, r, row in zip(prompts, responses, ids, strict=True)
    ]


def _render_all(tokenizer: Any, prompts: list[str], responses: list[str]) -> list[list[int]]:
    if has_chat_template(tokenizer):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
            )
            for p, r in zip(prompts, responses, strict=True)
        ]
        # The template holds the special tokens (BOS included): adding the tokenizer's would double BOS.
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    return tokenizer(prompts, responses)["input_ids"]


def _cut_prompt(
    tokenizer: Any, prompt: str, response: str, ids: list[int], max_length: int
) -> list[int] | None:
    """`ids` re-rendered with the prompt's first tokens dropped until it fits; None if even no prompt is too
    long. Each try drops as many prompt tokens as the last one was over (re-tokenizing may merge differently)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    keep = len(prompt_ids)
    while keep > 0:
        keep = max(0, keep - (len(ids) - max_length))
        kept = tokenizer.decode(prompt_ids[len(prompt_ids) - keep :]) if keep else ""
        ids = _render_all(tokenizer, [kept], [response])[0]
        if len(ids) <= max_length:
            return ids
    return None


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


def is_decoder(config: Any) -> bool:
    """Whether a classifier of this architecture reads a row's last token (Llama, Qwen, Gemma, GPT-2...)
    rather than its first (BERT-style encoders, which also have a masked-LM class)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", None)
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def read_alone(ids: list[int], own_pad_id: int | None) -> list[int]:
    """The prefix of `ids` ending at the token a decoder classifier reads when given `ids` alone.

    Without a pad id in its config it reads the last token; with one, the rightmost token that is not that id
    (transformers' rule), so trailing pad tokens (e.g. a final eos when pad == eos) are not read. The model is
    causal, so dropping them changes nothing else.
    """
    if own_pad_id is None:
        return ids
    end = len(ids)
    while end > 1 and ids[end - 1] == own_pad_id:
        end -= 1
    return ids[:end]


def unused_token_id(rows: list[list[int]], preferred: int | None, vocab_size: int) -> int:
    """A token id to pad with that occurs in no row: `preferred` if possible, else the smallest free id."""
    present = {t for r in rows for t in r}
    if preferred is not None and preferred not in present:
        return preferred
    return next(i for i in range(vocab_size) if i not in present)


class ScorerInputs:
    """What every reward scorer does before its model runs: check the call, encode each pair as the model reads
    it (encode_reward_inputs), and record which responses are too long to be read whole. A scorer sets
    model_id, max_length and _tokenizer; score() calls _inputs with its engine (None once closed)."""

    model_id: str
    max_length: int
    _tokenizer: Any
    last_exclusions: dict[int, str]

    @property
    def too_long_reason(self) -> str:
        return f"response longer than [reward] max_length={self.max_length} tokens even without its prompt"

    def _encode(self, prompts: list[str], responses: list[str]) -> list[list[int] | None]:
        return encode_reward_inputs(self._tokenizer, prompts, responses, self.max_length)

    def _inputs(self, prompts: list[str], responses: list[str], engine: Any) -> list[list[int] | None]:
        """Token ids per pair, None (and an entry in last_exclusions) where the response is too long."""
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if engine is None:
            raise RuntimeError(f"reward scorer for {self.model_id!r} was closed")
        ids = self._encode(prompts, responses) if prompts else []
        self.last_exclusions = {i: self.too_long_reason for i, row in enumerate(ids) if row is None}
        if self.last_exclusions:
            log.warning(
                "reward model %r: %d of %d responses not scored: %s",
                self.model_id,
                len(self.last_exclusions),
                len(ids),
                self.too_long_reason,
            )
        return ids


class RewardScorer(ScorerInputs):
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
        self.last_exclusions: dict[int, str] = {}  # of the last score() call: index -> why not scored
        self._model, self._tokenizer = load_reward_model(model, dtype, device)
        self.max_length = readable_max_length(self._model, self._tokenizer, max_length, model)
        self._reads_last_token = is_decoder(self._model.config)
        # The pad id the model's own config names (often eos, or none): what it reads alone depends on it.
        self._own_pad_id = self._model.config.get_text_config().pad_token_id

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Raw reward logits, float64, one per (prompt, response) pair, in input order.

        NaN where the response is too long to be read whole (last_exclusions maps those indexes to the
        reason); a longer prompt loses its start instead (encode_reward_inputs).
        """
        start = time.perf_counter()
        ids = self._inputs(prompts, responses, self._model)
        order = sorted((i for i, row in enumerate(ids) if row is not None), key=lambda i: len(ids[i]))
        scores = np.full(len(ids), np.nan, dtype=np.float64)
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

        pad = self._tokenizer.pad_token_id
        if self._reads_last_token:
            rows = [read_alone(r, self._own_pad_id) for r in rows]
            pad = unused_token_id(rows, pad, self._model.get_input_embeddings().num_embeddings)
            # The model reads each row's rightmost token that is not config.pad_token_id; with a pad id that
            # no row contains, that is the row's real last token even when it ends with eos == pad.
            self._model.config.get_text_config().pad_token_id = pad
        width = max(len(r) for r in rows)
        # Right padding, so every row keeps the positions it has alone; BERT-style models read position 0.
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
