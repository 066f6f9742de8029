"""The Ray engine on GPUs (`[generation] backend = "vllm"`): vLLM engines through ray.data.llm.

ray.data.llm keeps only the first output of a request, so K samples are K rows per prompt, each with its own
seed (sample_seed); vLLM's prefix caching shares their prompt prefill. The reward model runs as a vLLM pooling
model (task "classify") with its activation switched off: a one-label head would otherwise return sigmoid
probabilities, and PVar needs the raw logits RewardScorer returns. Its inputs are the token ids RewardScorer
would build (encode_reward_inputs), so truncation and chat format agree with the local engine.

The driver regroups the sample rows per committed batch and writes them with the local engine's writer. Samples
are not the local engine's (other kernels, per-sample seeds); rewards of the same texts agree with RewardScorer
up to the dtype's rounding. Needs GPUs and `ray[llm]` (which pins vLLM); not run by the CPU test suite.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from loop.ml.generation import Sample, derive_seed
from loop.scoring import ray_stages as stages
from loop.scoring.ray_driver import RayEngineError, RayJob, commit_items, run_ray_job
from loop.scoring.steps import ScoredPrompt, ScoreReport, finish_items
from storage.repositories.prompts import PromptRow
from storage.types import storable_text

if TYPE_CHECKING:
    from loop.config import ScoringConfig
    from storage.db import UnitOfWork

log = logging.getLogger(__name__)

# Columns of a sample row (the vLLM stages own "prompt", "messages", "sampling_params", ...: ours differ).
SAMPLE_INDEX, PROMPT_TEXT, TEXT, REWARD = "sample_index", "prompt_text", "text", "reward"


def sample_seed(seed: int, prompt: str, index: int) -> int:
    """The seed of sample `index` of `prompt`: distinct per sample, stable across runs and processes."""
    return derive_seed(seed, [prompt, f"sample {index}"])


def sampling_params(knobs: dict[str, Any], seed: int) -> dict[str, Any]:
    """vLLM SamplingParams of one sample row: one output (n > 1 would be cut to the first by ray.data.llm)."""
    return {
        "n": 1,
        "temperature": knobs["temperature"],
        "top_p": knobs["top_p"],
        "max_tokens": knobs["max_new_tokens"],
        "seed": seed,
    }


def reward_pooling_params() -> dict[str, Any]:
    """vLLM PoolingParams of a reward row: raw logits (the default for one label is a sigmoid)."""
    return {"use_activation": False}


def sample_rows(row: dict[str, Any], k: int, seed: int, knobs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """flat_map: one generation request per empty sample slot of a prompt row (stored samples are kept)."""
    texts = list(row[stages.TEXTS])
    for i in range(k):
        if texts[i] is None:
            yield {
                stages.BATCH: row[stages.BATCH],
                stages.PROMPT_ID: row[stages.PROMPT_ID],
                PROMPT_TEXT: row[stages.PROMPT],
                SAMPLE_INDEX: i,
                "messages": [{"role": "user", "content": row[stages.PROMPT]}],
                "sampling_params": sampling_params(knobs, sample_seed(seed, row[stages.PROMPT], i)),
            }


def stored_sample_rows(row: dict[str, Any], k: int) -> Iterator[dict[str, Any]]:
    """flat_map: the stored samples of a prompt row, which need a reward only."""
    texts, n_tokens = list(row[stages.TEXTS]), list(row[stages.N_TOKENS])
    for i in range(k):
        if texts[i] is not None:
            yield _sample(
                row[stages.BATCH], row[stages.PROMPT_ID], row[stages.PROMPT], i, texts[i], n_tokens[i], False
            )


def generated_sample(row: dict[str, Any], eos_ids: Sequence[int]) -> dict[str, Any]:
    """Postprocess of the generation processor: the sample, its length without the closing EOS (as the
    in-process backends count it)."""
    tokens = list(row["generated_tokens"])
    n = len(tokens) - 1 if tokens and tokens[-1] in set(eos_ids) else len(tokens)
    text = storable_text(row["generated_text"])  # as it will be stored, before scoring
    return _sample(
        row[stages.BATCH], row[stages.PROMPT_ID], row[PROMPT_TEXT], row[SAMPLE_INDEX], text, n, True
    )


def _sample(batch, prompt_id, prompt, index, text, n_tokens, new) -> dict[str, Any]:
    return {
        stages.BATCH: int(batch),
        stages.PROMPT_ID: prompt_id,
        PROMPT_TEXT: prompt,
        SAMPLE_INDEX: int(index),
        TEXT: text,
        stages.N_TOKENS: int(n_tokens),
        stages.NEW: bool(new),
    }


def reward_of(row: dict[str, Any]) -> dict[str, Any]:
    """Postprocess of the reward processor: the sample row with its raw logit."""
    keep = {
        c: row[c]
        for c in (
            stages.BATCH,
            stages.PROMPT_ID,
            PROMPT_TEXT,
            SAMPLE_INDEX,
            TEXT,
            stages.N_TOKENS,
            stages.NEW,
        )
    }
    logits = np.asarray(row["embeddings"], dtype=np.float64).reshape(-1)
    if logits.size != 1:
        raise RayEngineError(
            f"the reward model returned {logits.size} values per response; expected one logit"
        )
    return {**keep, REWARD: float(logits[0])}


class RewardInputStage:
    """Actor: RewardScorer's token ids for each (prompt, sample) row, plus the pooling params."""

    def __init__(self, model: str, max_length: int) -> None:
        from loop.ml.loading import load_tokenizer

        self.tokenizer, self.max_length = load_tokenizer(model), max_length

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from loop.ml.rewards import encode_reward_inputs

        ids = encode_reward_inputs(
            self.tokenizer, list(batch[PROMPT_TEXT]), list(batch[TEXT]), self.max_length
        )
        n = len(ids)
        return {
            **batch,
            "tokenized_prompt": ids,
            "prompt": [self.tokenizer.decode(row) for row in ids],
            "pooling_params": [reward_pooling_params()] * n,
        }


def generation_processor_kwargs(
    model: str, dtype: str, scoring: ScoringConfig, batch_size: int
) -> dict[str, Any]:
    """vLLMEngineProcessorConfig arguments of the policy's sampler (a plain dict: testable without vLLM)."""
    return {
        "model_source": model,
        "engine_kwargs": {"dtype": dtype, "enable_prefix_caching": True},
        "task_type": "generate",
        "concurrency": scoring.workers,
        "batch_size": batch_size,
    }


def reward_processor_kwargs(
    model: str, dtype: str, max_length: int, scoring: ScoringConfig, batch_size: int
) -> dict[str, Any]:
    """vLLMEngineProcessorConfig arguments of the reward model: a pooling model fed RewardScorer's token ids,
    so ray.data.llm's own chat-template, tokenize and detokenize stages are off."""
    return {
        "model_source": model,
        "engine_kwargs": {"dtype": dtype, "max_model_len": max_length},
        "task_type": "classify",
        "chat_template_stage": False,
        "tokenize_stage": False,
        "detokenize_stage": False,
        "concurrency": scoring.workers,
        "batch_size": batch_size,
    }


def _processor(kwargs: dict[str, Any], postprocess):
    try:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError as e:
        raise RayEngineError(
            f'[generation] backend = "vllm" with [scoring] engine = "ray" needs ray[llm]==2.60.0 (it pins vLLM) '
            f"on a GPU machine: {e}"
        ) from e
    return build_processor(vLLMEngineProcessorConfig(**kwargs), postprocess=postprocess)


def _eos_ids(model: str) -> list[int]:
    from transformers import GenerationConfig

    from loop.ml.loading import load_tokenizer

    ids = set()
    try:
        eos = GenerationConfig.from_pretrained(model).eos_token_id
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    except OSError:  # no generation_config.json: the tokenizer's EOS is all there is
        pass
    tokenizer = load_tokenizer(model)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def score_pool_vllm(
    uow: UnitOfWork,
    scoring: ScoringConfig,
    job: RayJob,
    model: str,
    dtype: str,
    knobs: dict[str, Any],
    scorer_kwargs: dict[str, Any],
) -> ScoreReport:
    """score_pool_ray's GPU twin: vLLM generation and reward processors, the same per-batch commits."""

    def drain(ray, report: ScoreReport, batches, rows) -> None:
        import pandas as pd

        k, size, max_length = job.k, job.batch_size, scorer_kwargs["max_length"]
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ds = ray.data.from_pandas([pd.DataFrame(r) for r in rows])
        generate = _processor(
            generation_processor_kwargs(model, dtype, scoring, size * k),
            functools.partial(generated_sample, eos_ids=tuple(_eos_ids(model))),
        )
        new = generate(ds.flat_map(sample_rows, fn_kwargs={"k": k, "seed": job.seed, "knobs": knobs}))
        samples = new.union(ds.flat_map(stored_sample_rows, fn_kwargs={"k": k}))
        score = _processor(
            reward_processor_kwargs(job.reward_model, scorer_kwargs["dtype"], max_length, scoring, size * k),
            reward_of,
        )
        inputs = samples.map_batches(
            RewardInputStage,
            fn_constructor_kwargs={"model": job.reward_model, "max_length": max_length},
            compute=ray.data.ActorPoolStrategy(size=1),
            batch_format="numpy",
        )
        _drain_samples(score(inputs), batches, uow, job, report)

    return run_ray_job(uow, scoring, job, drain, "Ray vLLM pipeline")


def items_from_samples(
    batch: Sequence[PromptRow], samples: Sequence[dict[str, Any]], k: int
) -> list[ScoredPrompt]:
    """A batch's prompts rebuilt from its rewarded sample rows; blank samples get no reward (local rule)."""
    items = {p.id: ScoredPrompt(p.id, {}, set(), {}) for p in batch}
    for s in samples:
        item, i = items[s[stages.PROMPT_ID]], int(s[SAMPLE_INDEX])
        item.responses[i] = Sample(s[TEXT], int(s[stages.N_TOKENS]))
        if s[stages.NEW]:
            item.new.add(i)
        reward = float(s[REWARD])
        if s[TEXT].strip() and math.isfinite(reward):
            item.rewards[i] = reward
    out = list(items.values())
    finish_items(out, k)
    return out


def _drain_samples(ds, batches, uow, job: RayJob, report: ScoreReport) -> None:
    k = job.k
    expected = {n: len(b) * k for n, b in enumerate(batches, 1)}
    pending: dict[int, list[dict]] = {}
    next_batch = 1
    for row in ds.iter_rows():
        pending.setdefault(int(row[stages.BATCH]), []).append(row)
        while next_batch in pending and len(pending[next_batch]) == expected[next_batch]:
            items = items_from_samples(batches[next_batch - 1], pending.pop(next_batch), k)
            commit_items(uow, job, items, next_batch, report)
            next_batch += 1
    if next_batch <= len(batches):
        raise RayEngineError(f"the Ray vLLM pipeline returned {next_batch - 1} of {len(batches)} batches")
