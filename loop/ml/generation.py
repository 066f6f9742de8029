"""Sampling K responses per prompt, behind one interface with a transformers and a vLLM backend.

Seeds are derived from the run seed and the prompts themselves, so a resumed run that meets the same prompts
again draws the same samples. torch/transformers/vllm are imported only when a backend is built.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from loop.ml.loading import (
    check_causal_lm,
    has_chat_template,
    load_causal_lm,
    load_tokenizer,
    release_memory,
    torch_dtype,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One sampled response: its text and its length in generated tokens (EOS not counted)."""

    text: str
    n_tokens: int


class ResponseGenerator(Protocol):
    """Samples k responses per prompt; result[i] holds the k samples of prompts[i]."""

    def generate(self, prompts: list[str], k: int, seed: int) -> list[list[Sample]]: ...

    def close(self) -> None: ...


def derive_seed(seed: int, prompts: list[str]) -> int:
    """A 63-bit seed from the run seed and the prompts, stable across processes (unlike hash())."""
    digest = hashlib.sha256(str(seed).encode())
    for prompt in prompts:
        digest.update(b"\x1f")
        digest.update(prompt.encode("utf-8"))
    return int.from_bytes(digest.digest()[:8], "big") >> 1


def _check_knobs(temperature: float, top_p: float, max_new_tokens: int, batch_size: int) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k (samples per prompt) must be >= 1, got {k}")


class TransformersGenerator:
    """HF transformers backend: left-padded prompt batches, k sequences per prompt in one generate call.

    Each batch is seeded with derive_seed(seed, batch prompts): the same prompts in the same batches give the
    same samples, whatever ran before in the process. Two switches (on by default, off = stock generate(),
    kept for the checks and the naive benchmark baseline) make batched sampling cheaper without changing
    what is drawn: share_prefill runs each prompt through the model once and copies its KV cache k times;
    fast_top_p applies top-p without sorting the vocabulary (loop/ml/sampling.py).
    """

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 128,
        batch_size: int = 8,
        device: str = "cpu",
        share_prefill: bool = True,
        fast_top_p: bool = True,
    ) -> None:
        _check_knobs(temperature, top_p, max_new_tokens, batch_size)
        self.model_id = model
        self.share_prefill, self.fast_top_p = share_prefill, fast_top_p
        self.temperature, self.top_p = temperature, top_p
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self._model, self._tokenizer = self._load(model, dtype, device)

    @staticmethod
    def _load(model: str, dtype: str, device: str) -> tuple[Any, Any]:
        torch_dtype(dtype)  # a bad dtype name is a ValueError before anything loads
        tokenizer = load_tokenizer(model)
        tokenizer.padding_side = "left"  # generation continues from the right end of every row
        return load_causal_lm(model, dtype, device).eval(), tokenizer

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self._tokenizer.eos_token_id is not None:
            ids.add(self._tokenizer.eos_token_id)
        return ids

    def _render(self, prompts: list[str]) -> tuple[list[str], bool]:
        """Chat-format the prompts when the tokenizer has a template (it then holds the special tokens)."""
        if not has_chat_template(self._tokenizer):
            return prompts, True
        texts = [
            self._tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
        return texts, False

    def generate(self, prompts: list[str], k: int, seed: int) -> list[list[Sample]]:
        _check_k(k)
        start, out = time.perf_counter(), []
        for i in range(0, len(prompts), self.batch_size):
            out.extend(self._generate_batch(prompts[i : i + self.batch_size], k, seed))
        elapsed = time.perf_counter() - start
        if prompts:
            n = len(prompts) * k
            rate = n / max(elapsed, 1e-9)
            log.debug("generated %d responses in %.1f s (%.1f responses/s)", n, elapsed, rate)
        return out

    def _sampling(self) -> dict[str, Any]:
        """generate() arguments for this generator's decoding rule."""
        if self.temperature == 0:
            return {"do_sample": False}
        if self.fast_top_p and self.top_p < 1:
            from transformers import LogitsProcessorList

            from loop.ml.sampling import TemperatureTopP

            # It does temperature and top-p itself, so generate() must not add its own warpers.
            warp = LogitsProcessorList([TemperatureTopP(self.temperature, self.top_p)])
            return {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "logits_processor": warp}
        # top_k=0 switches off transformers' implicit top_k=50, matching vLLM's default
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": 0}

    def _generate_batch(self, prompts: list[str], k: int, seed: int) -> list[list[Sample]]:
        import torch

        texts, add_special = self._render(prompts)
        enc = self._tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=add_special)
        enc = enc.to(self._model.device)
        greedy = self.temperature == 0
        # Greedy decoding refuses num_return_sequences > 1; its k samples are one sequence repeated.
        n_seq = 1 if greedy else k
        device = self._model.device
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        knobs = {
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": self._tokenizer.pad_token_id,
            **self._sampling(),
        }
        with torch.random.fork_rng(devices=rng_devices), torch.inference_mode():
            torch.manual_seed(derive_seed(seed, prompts))
            if self.share_prefill:
                from loop.ml.sampling import generate_shared_prefill

                seqs = generate_shared_prefill(
                    self._model, enc["input_ids"], enc["attention_mask"], n_seq, **knobs
                )
            else:
                seqs = self._model.generate(**enc, num_return_sequences=n_seq, **knobs)
        new = seqs[:, enc["input_ids"].shape[1] :].tolist()
        eos = self._eos_ids()
        samples = [self._to_sample(row, eos) for row in new]
        if greedy:
            return [[s] * k for s in samples]
        # generate() returns the k sequences of each prompt next to each other
        return [samples[j * k : (j + 1) * k] for j in range(len(prompts))]

    def _to_sample(self, row: list[int], eos: set[int]) -> Sample:
        # Everything after the first EOS is padding; a sampled pad id before it is a real token.
        end = next((i for i, t in enumerate(row) if t in eos), len(row))
        text = self._tokenizer.decode(row[:end], skip_special_tokens=True)
        return Sample(text=text, n_tokens=end)

    def close(self) -> None:
        """Drop the model so its memory can be reclaimed."""
        self._model = self._tokenizer = None
        release_memory()


class VllmGenerator:
    """vLLM backend: LLM.chat with one SamplingParams(n=k) per prompt, seeded per prompt.

    Per-prompt seeds make each prompt's samples independent of the batch it came in (and of how vLLM schedules
    it). batch_size and device are accepted for config parity with TransformersGenerator; vLLM batches and
    places the model. The engine comes from loop.ml.vllm_engine (built once per model directory, with this
    machine's defaults); close() leaves it cached for the next generator of the same model.
    """

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 128,
        batch_size: int = 8,
        device: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        from loop.ml.vllm_engine import open_engine

        _check_knobs(temperature, top_p, max_new_tokens, batch_size)
        torch_dtype(dtype)  # validates the name; vLLM takes the string itself
        check_causal_lm(model)
        self.model_id = model
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self._llm = open_engine(model, runner="generate", dtype=dtype, **engine_kwargs)
        import vllm

        self._sampling_params_cls = vllm.SamplingParams

    def generate(self, prompts: list[str], k: int, seed: int) -> list[list[Sample]]:
        _check_k(k)
        if not prompts:
            return []
        if self._llm is None:
            raise RuntimeError(f"vLLM generator for {self.model_id!r} was closed")
        greedy = self.temperature == 0
        # vLLM refuses n > 1 (and, in older releases, top_p < 1) with greedy decoding: sample once, repeat.
        params = [
            self._sampling_params_cls(
                n=1 if greedy else k,
                temperature=self.temperature,
                top_p=1.0 if greedy else self.top_p,
                max_tokens=self.max_new_tokens,
                seed=None if greedy else derive_seed(seed, [p]),
            )
            for p in prompts
        ]
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        start = time.perf_counter()
        outputs = self._llm.chat(
            conversations, sampling_params=params, use_tqdm=False, add_generation_prompt=True
        )
        elapsed = time.perf_counter() - start
        log.debug("vLLM generated %d responses in %.1f s", len(prompts) * k, elapsed)
        if greedy:
            return [[_vllm_sample(out.outputs[0])] * k for out in outputs]
        return [[_vllm_sample(c) for c in out.outputs] for out in outputs]

    def close(self) -> None:
        self._llm = None  # the engine stays cached (loop.ml.vllm_engine.close_all_engines frees it)


def _vllm_sample(completion: Any) -> Sample:
    n = len(completion.token_ids)
    # finish_reason "stop" with no stop_reason means it stopped on EOS, whose id ends token_ids.
    if n and completion.finish_reason == "stop" and completion.stop_reason is None:
        n -= 1
    return Sample(text=completion.text, n_tokens=n)


GENERATORS: dict[str, type] = {"transformers": TransformersGenerator, "vllm": VllmGenerator}
BACKENDS = ("auto", *GENERATORS)


# Below this many parameters the transformers engine is done before a vLLM engine has started (~15 s on CPU).
AUTO_VLLM_MIN_PARAMS = 50_000_000


def resolve_backend(backend: str, model: str | None = None) -> str:
    """The engine a backend name means here. "auto" is vLLM where it is installed (2-4x the transformers
    engine's responses/s on CPU, far more on GPU), except for a model so small (the test suite's, the quick
    demo's) that vLLM's engine start would cost more than all its sampling."""
    from loop.ml.vllm_engine import vllm_installed

    if backend == "auto":
        if not vllm_installed():
            return "transformers"
        small = model is not None and approx_params(model) < AUTO_VLLM_MIN_PARAMS
        return "transformers" if small else "vllm"
    if backend not in GENERATORS:
        raise ValueError(f"unknown generation backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    return backend


def approx_params(model: str) -> float:
    """A causal LM's parameter count from its config alone (inf when the config says too little)."""
    from loop.ml.loading import model_config

    config = model_config(model, "policy").get_text_config()
    hidden = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    vocab = getattr(config, "vocab_size", None)
    if not (hidden and layers and vocab):
        return float("inf")
    inter = getattr(config, "intermediate_size", None) or 4 * hidden
    return layers * (4 * hidden * hidden + 3 * hidden * inter) + vocab * hidden


def make_generator(backend: str, **kwargs: Any) -> ResponseGenerator:
    """Build the generator named by backend ("auto", "transformers" or "vllm") with the given knobs."""
    return GENERATORS[resolve_backend(backend, kwargs.get("model"))](**kwargs)
