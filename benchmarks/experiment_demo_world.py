"""Benchmark: the label-efficiency experiment on the demo world, with the learned selection reward model.

Sets up a fresh data dir the way `pvar-loop demo` does (SmolLM2-135M-Instruct policy; a MiniLM reward model
trained with TRL's RewardTrainer on annotator labels of a seed pool disjoint from the pool and the eval split),
then runs `loop.experiment.runner.run_experiment` for the arms: pvar, random over 3 seeds, low-pvar, reward-gap, and the
two controls (random-disagree; pvar-matched, with random-s0's training steps). Every arm has its own policy
lineage, the same pool, budget per round, simulated annotator (the rule verifier with Bradley-Terry noise; ties
when both responses satisfy equally many constraints) and evaluation (win rate against the initial policy on
the eval split, --eval-samples responses per prompt and side, verifier judge, bootstrap 95% CI over prompts;
every sampled response is stored in evaluation_samples, and the initial policy is sampled once for all arms).

Prints the selection RM's held-out agreement with the verifier, the table (labels, decided pairs, ties, DPO
steps, win rate [CI], mean verifier score [CI], wall time per arm and round) and the total wall time; writes the
results JSON and, with --markdown, the same table as Markdown. Resumable: rerun with --resume to finish the
rounds an interrupted run left open (the data dir is kept).

Usage: HF_HUB_OFFLINE=1 python benchmarks/experiment_demo_world.py [--train 128] [--eval 80] [--budget 32]
    [--rounds 2] [--markdown docs/experiment-results.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARMS = "pvar,random-s0,random-s1,random-s2,low-pvar,reward-gap,random-disagree,pvar-matched"


def markdown_table(results: dict) -> str:
    from loop.experiment.results import COLUMNS, table_rows

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("data/experiment-bench"))
    ap.add_argument("--model-cache", type=Path, default=Path("data/models"))
    ap.add_argument("--train", type=int, default=128, help="pool prompts")
    ap.add_argument("--eval", type=int, default=80, help="eval prompts")
    ap.add_argument("--eval-samples", type=int, default=4, help="responses sampled per eval prompt and side")
    ap.add_argument("--seed-prompts", type=int, default=96, help="seed pool for the selection reward model")
    ap.add_argument("--budget", type=int, default=32, help="labels per round and arm")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--arms", default=ARMS)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--resume", action="store_true", help="keep the data dir and finish what is open")
    ap.add_argument("--reset-arm", action="append", default=[], help="with --resume: run this arm again")
    ap.add_argument("--markdown", type=Path, help="also write the table (and the run's facts) here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from loop.config import load_config
    from loop.demo.run import FULL, prepare_world
    from loop.experiment.annotator import verifier_annotation
    from loop.experiment.results import format_table
    from loop.experiment.runner import ExperimentPlan, arms_by_name, run_experiment
    from storage.db import UnitOfWork, make_engine

    profile = dataclasses.replace(
        FULL,
        name="experiment",
        n_train=args.train,
        n_eval=args.eval,
        n_seed=args.seed_prompts,
        budget=args.budget,
        max_new_tokens=args.max_new_tokens,
        eval_samples=args.eval_samples,
    )
    t0 = time.perf_counter()
    data_dir = args.data_dir.resolve()
    facts_file = data_dir / "experiment" / "world.json"
    if args.resume:
        facts = json.loads(facts_file.read_text())
        config = Path(facts["config"])
    else:
        world = prepare_world(data_dir, profile, args.model_cache)
        config = world.config
        facts = {
            "config": str(config),
            "selection_rm": world.seed_summary,
            "setup_s": time.perf_counter() - t0,
        }
        facts_file.parent.mkdir(parents=True, exist_ok=True)
        facts_file.write_text(json.dumps(facts, indent=2))
    cfg = load_config(config)
    uow = UnitOfWork(make_engine(cfg.database_url))
    for arm in args.reset_arm:
        from loop.experiment.reset import reset_arm

        print(reset_arm(uow, arm, data_dir=cfg.paths.data_dir, actor="benchmark"))
    plan = ExperimentPlan(arms=arms_by_name(args.arms.split(",")), rounds=args.rounds, budget=args.budget)
    out = data_dir / "experiment" / "results.json"
    results = run_experiment(cfg, uow, plan, verifier_annotation(uow), out=out)
    wall = time.perf_counter() - t0
    table = format_table(results)
    print(f"selection RM: {facts['selection_rm']}")
    print(table)
    print(f"wall time {wall:.0f} s (this run; world setup {facts['setup_s']:.0f} s); results: {out}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(
            f"Pool {args.train} prompts, eval {args.eval}, seed pool {args.seed_prompts}, budget {args.budget} "
            f"per round, {args.rounds} rounds, K={profile.k}, max_new_tokens {args.max_new_tokens}, "
            f"{args.eval_samples} eval samples per prompt.\n\n"
            f"{facts['selection_rm']}\n\n{markdown_table(results)}\n\nWall time {wall:.0f} s.\n"
        )


if __name__ == "__main__":
    main()
