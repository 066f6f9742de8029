"""`pvar-loop sweep`: the powered label-efficiency experiment (PVar vs random across selection-RM quality,
budgets and seeds; loop/experiment/sweep/) and its report, regenerated from the database."""

from __future__ import annotations

import argparse
from pathlib import Path

from loop.cli.common import add_command, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from loop.experiment.sweep.profiles import PROFILES

    s = add_command(
        sub,
        "sweep",
        cmd_sweep,
        help="the powered experiment: PVar vs random over selection-RM quality, budgets and seeds",
        description="Simulated annotator on the demo world (never Argilla); every eval sample is stored, and "
        "`sweep report` redoes the analysis from the database.",
    )
    sw = s.add_subparsers(dest="sweep_command", required=True)
    run = sw.add_parser("run", help="set up the world once, then run every cell not finished yet")
    run.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="standard",
        help="standard: under 2 h on a 2-core CPU with --jobs 2; preregistered: the pre-registered design "
        "(docs/experiment.md); sequential: the loop's design, 2 rounds x 32 labels (docs/experiment.md); large: "
        "a GPU machine (scripts/sweep-gpu); tiny, tiny-sequential: tests",
    )
    run.add_argument("--data-dir", default="data/sweep", help="the sweep's directory (default data/sweep)")
    run.add_argument(
        "--model-cache", default="data/models", help="converted SmolLM2/MiniLM (default data/models)"
    )
    run.add_argument("--resume", action="store_true", help="finish the sweep in --data-dir (kept as it is)")
    run.add_argument(
        "--max-cells",
        type=positive_int,
        help="run at most this many cells now (time-boxing; --resume goes on)",
    )
    run.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="run the cells in this many worker processes, each with cores / jobs threads (default 1)",
    )
    run.add_argument("--shard", type=_shard, help=argparse.SUPPRESS)  # one worker of --jobs: "i/n"
    run.add_argument("--train-draws", type=_seeds, help=argparse.SUPPRESS)  # a draw worker of --jobs: seeds
    run.add_argument("--out", help="also write the report here (e.g. docs/experiment-results.md)")
    mech = sw.add_parser(
        "mechanism",
        help="DPO gradient norm at the initial policy of each labelled pair (curve RM, largest budget) and of "
        "the pool's shown pairs; `sweep report` then adds the mechanism tables",
    )
    mech.add_argument("--data-dir", default="data/sweep", help="the sweep's directory (default data/sweep)")
    mech.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default: the sweep's first three)")
    mech.add_argument("--no-pool", action="store_true", help="only the picks, not the pool's pairs")
    rep = sw.add_parser("report", help="regenerate the results document and plots from the database")
    rep.add_argument("--data-dir", default="data/sweep", help="the sweep's directory (default data/sweep)")
    rep.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="report this profile's cells, when several profiles ran over the data dir's world (default: "
        "the profile that made it)",
    )
    rep.add_argument(
        "--out", default="docs/experiment-results.md", help="Markdown file; plots go to img/ beside it"
    )
    rep.add_argument(
        "--bootstrap", type=positive_int, default=2000, help="bootstrap replicates (default 2000)"
    )
    rep.add_argument(
        "--from-table",
        metavar="CSV",
        help="regenerate from a per-prompt table (written beside every report, facts in its .json twin) "
        "instead of the database",
    )


def _seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from None


def _shard(text: str) -> tuple[int, int]:
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise argparse.ArgumentTypeError(f"expected i/n with 0 <= i < n, got {text!r}")
    return int(i), int(n)


def cmd_sweep(args: argparse.Namespace) -> int:
    from loop.experiment.sweep.profiles import PROFILES
    from loop.experiment.sweep.run import (
        default_report,
        measure_mechanism,
        report_from_table,
        run,
        train_draws,
        write_report,
    )

    data_dir = Path(args.data_dir)
    if args.sweep_command == "run" and args.train_draws:
        train_draws(data_dir, PROFILES[args.profile], Path(args.model_cache), args.train_draws)
        return 0
    if args.sweep_command == "run":
        statuses = run(
            data_dir,
            PROFILES[args.profile],
            Path(args.model_cache),
            resume=args.resume,
            max_cells=args.max_cells,
            jobs=args.jobs,
            shard=args.shard,
        )
        if args.shard is not None:
            return 0  # a worker: the parent reports
        done = sum(s == "done" for s in statuses.values())
        print(f"sweep: {done} of {len(statuses)} cells done")
        out = Path(args.out) if args.out else default_report(data_dir, args.profile)
        path, _ = write_report(data_dir, out, profile=args.profile)
    elif args.sweep_command == "mechanism":
        print(f"mechanism: {measure_mechanism(data_dir, args.seeds, pool=not args.no_pool)}")
        return 0
    elif args.from_table:
        path, _ = report_from_table(Path(args.from_table), Path(args.out), n_boot=args.bootstrap)
    else:
        path, _ = write_report(data_dir, Path(args.out), n_boot=args.bootstrap, profile=args.profile)
    print(f"report: {path}")
    return 0
