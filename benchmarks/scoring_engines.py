"""Benchmark: pool scoring on the local engine against the Ray engine with 1 and 2 workers, same prompts/models.

Each run scores a fresh project (temporary SQLite database) through `pvar-loop score`, i.e. score_with_config
with `[scoring] engine` set, and prints prompts/s and generated tokens/s two ways: over the scoring loop only
(the report's own clock) and over the whole call (wall: model loading, and for Ray the actors' start, included).
The local engine runs twice: with torch's default threads (one per core) and with one thread, like a Ray actor.
Ray runs on a Ray started once here with --cpus CPUs (default 2); with 2 workers on 2 CPUs each actor reserves
0.5 CPU. All runs draw the same samples (the Ray engine reproduces the local one), which the script checks.

Models: "demo" = SmolLM2-135M-Instruct policy + all-MiniLM-L6-v2 reward backbone (from their wheels, converted
into --cache-dir), "tiny" = the test suite's tiny random models (seconds; for a smoke run).
Usage: HF_HUB_OFFLINE=1 python benchmarks/scoring_engines.py [--models demo|tiny] [--prompts 16] [--k 4]
    [--max-new-tokens 32] [--batch-size 4] [--cpus 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = ["lists", "tuples", "sets", "files", "loops", "classes", "strings", "numbers", "dicts", "modules"]


def prompts(n: int) -> list[str]:
    return [f"Question {i}: explain how {TOPICS[i % len(TOPICS)]} work in Python, briefly." for i in range(n)]


def models(kind: str, cache_dir: Path) -> tuple[Path, Path]:
    from loop.ml.offline_models import build_tiny_models, load_minilm_reward_backbone, load_smollm2

    if kind == "tiny":
        tiny = build_tiny_models(cache_dir / "tiny", seed=0)
        return tiny.policy_dir, tiny.reward_dir
    return load_smollm2(cache_dir), load_minilm_reward_backbone(cache_dir)


def cli(config: Path, *args: str) -> str:
    from loop.cli.app import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--config", str(config), *args])
    if code != 0:
        raise SystemExit(f"pvar-loop {' '.join(args)} exited {code}: {out.getvalue()}")
    return out.getvalue()


def run(name: str, root: Path, policy: Path, reward: Path, args, scoring: str) -> dict:
    root.mkdir(parents=True)
    config = root / "pvar-loop.toml"
    config.write_text(
        f"""[paths]
data_dir = "{root / "data"}"
[policy]
model = "{policy}"
dtype = "float32"
[generation]
k = {args.k}
max_new_tokens = {args.max_new_tokens}
batch_size = {args.batch_size}
[reward]
model = "{reward}"
dtype = "float32"
max_length = 256
[scoring]
{scoring}
""",
        encoding="utf-8",
    )
    cli(config, "init")
    pool = root / "prompts.jsonl"
    pool.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in prompts(args.prompts)), encoding="utf-8"
    )
    cli(config, "ingest", str(pool))
    start = time.perf_counter()
    report = json.loads(cli(config, "score", "--no-progress", "--json"))
    wall = time.perf_counter() - start
    with sqlite3.connect(root / "data" / "pvar-loop.db") as db:
        samples = db.execute(
            "SELECT prompt_id, sample_index, text FROM generations ORDER BY prompt_id, sample_index"
        ).fetchall()
    done = report["scored"] + len(report["excluded"])
    return {
        "run": name,
        "prompts": done,
        "tokens": report["tokens_generated"],
        "loop_s": report["elapsed_s"],
        "wall_s": wall,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", choices=["demo", "tiny"], default="demo")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import ray
    import torch

    default_threads = torch.get_num_threads()
    policy, reward = models(args.models, args.cache_dir)
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
    runs = [
        ("local", 'engine = "local"'),
        ("local, 1 thread", 'engine = "local"'),
        ("ray, 1 worker", 'engine = "ray"\nworkers = 1\ncpus_per_worker = 1.0'),
        ("ray, 2 workers", f'engine = "ray"\nworkers = 2\ncpus_per_worker = {args.cpus / 4}'),
    ]
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="scoring-engines-") as tmp:
            for i, (name, scoring) in enumerate(runs):
                # torch's default is a thread per core; a Ray actor runs max(1, cpus_per_worker) threads.
                threads = 1 if name == "local, 1 thread" else default_threads
                torch.set_num_threads(threads)
                results.append(run(name, Path(tmp) / str(i), policy, reward, args, scoring))
            torch.set_num_threads(default_threads)
    finally:
        ray.shutdown()
    print(
        f"models={args.models} prompts={args.prompts} K={args.k} max_new_tokens={args.max_new_tokens} "
        f"batch_size={args.batch_size} Ray CPUs={args.cpus} (machine: {os.cpu_count()} cores)"
    )
    print(
        f"{'run':<16} {'prompts/s':>10} {'tokens/s':>10} {'loop s':>8} {'prompts/s wall':>15} {'wall s':>8}"
    )
    for r in results:
        print(
            f"{r['run']:<16} {r['prompts'] / r['loop_s']:>10.2f} {r['tokens'] / r['loop_s']:>10.1f} "
            f"{r['loop_s']:>8.1f} {r['prompts'] / r['wall_s']:>15.2f} {r['wall_s']:>8.1f}"
        )
    same = all(r["samples"] == results[0]["samples"] for r in results)
    print(f"same samples in every run: {same}")


if __name__ == "__main__":
    main()
