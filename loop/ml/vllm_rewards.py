"""Reward scoring through vLLM's pooling runner (`[reward] backend = "vllm"`): the same inputs as RewardScorer.

Each (prompt, response) is rendered and cut by encode_reward_inputs, then trimmed by read_alone, exactly as the
transformers scorer does, and handed to vLLM as token ids, so both read the same tokens (the RM's own chat
template, one BOS, the prompt's start dropped when too long). vLLM's classifier reads the last token of each
sequence, which is what a decoder reward model reads alone; encoder (BERT-style) reward models read a text pair
with segment ids that token-id prompts cannot carry, so they are refused. Scores are raw logits: vLLM squashes a
one-label head with a sigmoid unless the activation is switched off, and PVar needs the unsquashed scale.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from loop.ml.loading import ModelLoadError, check_reward_model, load_tokenizer
from loop.ml.rewards import ScorerInputs, is_decoder, read_alone, readable_max_length
from loop.ml.vllm_engine import open_engine

log = logging.getLogger(__name__)


class VllmRewardScorer(ScorerInputs):
    """RewardScorer's contract (score, last_exclusions, too_long_reason, close) on a vLLM pooling engine."""

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        max_length: int = 1024,
        batch_size: int = 16,
        device: str | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id = model
        self.batch_size = batch_size  # vLLM schedules its own batches; kept for parity with RewardScorer
        self.last_exclusions: dict[int, str] = {}
        config = check_reward_model(model)
        if not is_decoder(config):
            raise ModelLoadError(
                f"[reward] backend 'vllm' scores decoder reward models only; {model!r} is an encoder "
                f"({config.model_type}) that reads a text pair: use backend 'transformers'"
            )
        self._tokenizer = load_tokenizer(model)
        self.max_length = readable_max_length(_WithConfig(config), self._tokenizer, max_length, model)
        self._own_pad_id = config.get_text_config().pad_token_id
        self._llm = open_engine(model, runner="pooling", dtype=dtype, max_model_len=self.max_length)
        from vllm import PoolingParams

        self._params = PoolingParams(use_activation=False)

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Raw reward logits, float64, in input order; NaN (and last_exclusions) where a response is too long."""
        start = time.perf_counter()
        ids = self._inputs(prompts, responses, self._llm)
        scores = np.full(len(ids), np.nan, dtype=np.float64)
        kept = [i for i, row in enumerate(ids) if row is not None]
        if kept:
            inputs = [{"prompt_token_ids": read_alone(ids[i], self._own_pad_id)} for i in kept]
            outputs = self._llm.classify(inputs, pooling_params=self._params, use_tqdm=False)
            scores[kept] = [float(out.outputs.probs[0]) for out in outputs]
        log.debug("vLLM scored %d pairs in %.2f s", len(ids), time.perf_counter() - start)
        return scores

    def close(self) -> None:
        self._llm = self._tokenizer = None  # the engine stays cached (loop.ml.vllm_engine)


class _WithConfig:
    """What readable_max_length reads of a model: its config (the weights are vLLM's)."""

    def __init__(self, config: Any) -> None:
        self.config = config
