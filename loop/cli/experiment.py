"""`pvar-loop experiment`: compare selection arms on one pool with a simulated annotator (never Argilla), or
replay a rated dataset (top X% by PVar vs full)."""

from __future__ import annotations

import argparse
from pathlib import Path

from loop.cli.common import UserError, add_command, config_from, open_engine


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(
        sub,
        "experiment",
        cmd_experiment,
        help="run selection arms side by side (own policy lineage each, same pool, budget and evaluation)",
        description="Labels come from an in-process simulated annotator (the demo world's verifier, or the "
        "dataset's own ratings with --replay), so arms can be compared cheaply; production labels come "
        "through Argilla.",
    )
    s.add_argument(
        "--arms",
        help="comma-separated arms (default: pvar, random-s0..s2, low-pvar, reward-gap, full, random-disagree, "
        "pvar-matched)",
    )
    s.add_argument("--rounds", type=int, default=2, help="rounds per arm (default 2)")
    s.add_argument("--budget", type=int, help="items per round and arm (default: [selection] budget)")
    s.add_argument("--replay", metavar="FILE", help="UltraFeedback-style JSONL: top X%% by PVar vs full")
    s.add_argument("--top-fraction", type=float, default=0.1, help="replay: share of the pool for PVar (0.1)")
    s.add_argument(
        "--rating", default="overall_score", help="replay: rating key (overall_score, an aspect...)"
    )
    s.add_argument("--eval-fraction", type=float, default=0.1, help="replay: prompts held out for evaluation")
    s.add_argument(
        "--reset-arm",
        action="append",
        default=[],
        metavar="ARM",
        help="first forget this arm's rounds, labels and checkpoints (to run it again); repeatable",
    )
    s.add_argument("--out", metavar="FILE", help="results JSON (default: <data_dir>/experiment/results.json)")


def _print_round(row: dict) -> None:
    ev = row["evaluation"]
    win = (
        f"win rate {ev['win_rate']:.3f} [{ev['ci_low']:.3f}, {ev['ci_high']:.3f}]" if ev else "no evaluation"
    )
    if ev and ev.get("policy_ci_low") is not None:
        win += f", mean score {ev['policy_mean']:.3f} [{ev['policy_ci_low']:.3f}, {ev['policy_ci_high']:.3f}]"
    print(
        f"{row['arm']} round {row['number']}: {row['status']}, {row['labels']} labels "
        f"({row['decided_ab']} a/b, {row['ties']} ties), {win}",
        flush=True,
    )


def _reset_arms(uow, cfg, arms: list[str]) -> None:
    from loop.experiment.reset import reset_arm

    for arm in arms:
        try:
            done = reset_arm(uow, arm, data_dir=cfg.paths.data_dir, actor="cli")
        except ValueError as e:
            raise UserError(f"--reset-arm {arm}: {e}") from None
        print(
            f"reset arm {arm}: {done.rounds} rounds, {done.checkpoints} checkpoints, {done.labels} labels removed"
        )


def cmd_experiment(args: argparse.Namespace) -> int:
    from loop.experiment.results import format_table
    from loop.experiment.runner import (
        DEFAULT_ARMS,
        ExperimentPlan,
        arms_by_name,
        run_experiment,
    )
    from storage.db import UnitOfWork

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    out = Path(args.out) if args.out else cfg.paths.data_dir / "experiment" / "results.json"
    _reset_arms(uow, cfg, args.reset_arm)
    if args.replay:
        from loop.experiment.replay import ingest_ultrafeedback_style, run_replay

        with uow() as session:
            report = ingest_ultrafeedback_style(
                session, Path(args.replay), rating=args.rating, eval_fraction=args.eval_fraction
            )
        print(
            f"replay: {report.prompts} pool prompts ({report.completions} completions), "
            f"{report.eval_prompts} eval prompts"
        )
        results = run_replay(cfg, uow, top_fraction=args.top_fraction, out=out, on_round=_print_round)
    else:
        from loop.experiment.annotator import verifier_annotation

        names = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
        arms = arms_by_name(names) if names else list(DEFAULT_ARMS)
        budget = cfg.selection.budget if args.budget is None else args.budget
        plan = ExperimentPlan(arms=arms, rounds=args.rounds, budget=budget)  # validates before any work
        try:
            annotator = verifier_annotation(uow)
        except ValueError as e:
            raise UserError(f"{e} (ingest the demo world's prompts, or use --replay FILE)") from None
        results = run_experiment(cfg, uow, plan, annotator, out=out, on_round=_print_round)
    print(format_table(results))
    print(f"results: {out.resolve()}")
    return 0
