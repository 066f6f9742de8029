"""Which reward scorer a `[reward] backend` name builds: transformers (any one-logit head) or vLLM (decoders)."""

from __future__ import annotations

from typing import Any

REWARD_BACKENDS = ("transformers", "vllm")


def make_reward_scorer(backend: str, model: str, **kwargs: Any) -> Any:
    """A RewardScorer (backend "transformers") or VllmRewardScorer ("vllm") for `model` with the given knobs."""
    if backend == "transformers":
        from loop.ml.rewards import RewardScorer

        return RewardScorer(model, **kwargs)
    if backend == "vllm":
        from loop.ml.vllm_rewards import VllmRewardScorer

        return VllmRewardScorer(model, **kwargs)
    raise ValueError(f"unknown reward backend {backend!r}; allowed: {', '.join(REWARD_BACKENDS)}")
