"""Benchmark: evaluation sampling (what dominates a sweep cell's time), the transformers engine against vLLM.

Runs loop.evaluation.win_rate.evaluate_policies on SmolLM2-135M-Instruct (policy and reference the same model,
so the win rate is ~0.5 and only the speed matters) over the demo world's prompts, once per backend, in the
config's evaluation settings (bf16 on CPU, T 0.8, top_p 0.95). Prints answers/s (policy + reference samples
per second of the evaluation, judging included), generated tokens/s, and the vLLM engine start separately.
Usage: HF_HUB_OFFLINE=1 python benchmarks/evaluation_speed.py [--prompts 32] [--samples 2] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def judge(prompt: str, response: str) -> float:
    """A cheap deterministic judge (the benchmark measures sampling, not judging)."""
    return float(len(response.split()) % 7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=2, help="[evaluation] samples_per_prompt")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    args = ap.parse_args()

    import numpy as np

    from loop.demo.world import make_prompt
    from loop.evaluation.win_rate import evaluate_policies
    from loop.ml.offline_models import load_smollm2

    policy = load_smollm2(args.cache_dir)
    rng = np.random.default_rng(0)
    prompts = [make_prompt(rng)["prompt"] for _ in range(args.prompts)]
    print(f"policy {policy}; {args.prompts} prompts x {args.samples} samples per side, {args.dtype}")
    print(f"max_new_tokens {args.max_new_tokens}, T 0.8, top_p 0.95; judge: word count (cheap)")
    backends = ["transformers"] + (["vllm"] if importlib.util.find_spec("vllm") else [])
    rates = {}
    for backend in backends:
        if backend == "vllm":
            from loop.ml.vllm_engine import open_engine

            t0 = time.perf_counter()
            open_engine(str(policy), runner="generate", dtype=args.dtype)
            print(f"vLLM engine start: {time.perf_counter() - t0:.1f} s (not in the figures below)")
        t0 = time.perf_counter()
        result = evaluate_policies(
            prompts,
            policy,
            policy,
            judge,
            samples_per_prompt=args.samples,
            max_new_tokens=args.max_new_tokens,
            temperature=0.8,
            top_p=0.95,
            dtype=args.dtype,
            backend=backend,
            n_bootstrap=200,
        )
        seconds = time.perf_counter() - t0
        answers = 2 * args.prompts * args.samples
        tokens = sum(sum(row) for side in (result.policy, result.reference) for row in side.n_tokens)
        rates[backend] = answers / seconds
        print(
            f"{backend:<13} {seconds:7.1f} s  {answers / seconds:6.2f} answers/s  {tokens / seconds:7.1f} tokens/s"
            f"  win rate {result.win_rate.value:.3f}"
        )
    if len(rates) == 2:
        print(f"vLLM / transformers: {rates['vllm'] / rates['transformers']:.2f}x answers/s")


if __name__ == "__main__":
    main()
