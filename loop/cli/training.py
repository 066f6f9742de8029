"""Sub-commands for retraining: train, evaluate, export, export-model."""

from __future__ import annotations

import argparse
from pathlib import Path

from loop.cli.common import UserError, add_command, open_uow


def _round_id(uow, number: int | None) -> tuple[int, int]:
    from storage.repositories.rounds import latest_labelled_round, round_by_number

    with uow() as session:
        rnd = latest_labelled_round(session) if number is None else round_by_number(session, number)
        if rnd is None:
            raise UserError(f"no round {number}" if number is not None else "no round has labels yet")
        return rnd.id, rnd.number


def cmd_train(args: argparse.Namespace) -> int:
    from loop.rounds.training import train_round

    cfg, uow = open_uow(args)
    round_id, number = _round_id(uow, args.round)
    checkpoint = train_round(cfg, uow, round_id)
    print(f"round {number}: checkpoint {checkpoint}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from loop.rounds.evaluating import evaluate_checkpoint
    from storage.repositories.checkpoints import latest_checkpoint

    cfg, uow = open_uow(args)
    checkpoint = args.checkpoint
    if checkpoint is None:
        with uow() as session:
            latest = latest_checkpoint(session)
            if latest is None:
                raise UserError("no trained checkpoint yet (run `pvar-loop train`)")
            checkpoint = latest.id
    ev = evaluate_checkpoint(cfg, uow, checkpoint)
    print(
        f"{checkpoint} vs {ev.reference_id}: win rate {ev.win_rate:.3f} [{ev.ci_low:.3f}, {ev.ci_high:.3f}] "
        f"on {ev.n_prompts} eval prompts ({ev.judge})"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from loop.export import export_preferences

    _, uow = open_uow(args)
    with uow() as session:
        n = export_preferences(session, Path(args.out))
    print(f"wrote {n} preference pairs to {args.out} (TRL conversational format: prompt/chosen/rejected)")
    return 0


def cmd_export_model(args: argparse.Namespace) -> int:
    from storage.repositories.checkpoints import latest_checkpoint

    _, uow = open_uow(args)
    with uow() as session:
        latest = latest_checkpoint(session)
        if latest is None:
            raise UserError("no trained checkpoint yet (run `pvar-loop train`)")
        print(latest.path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(sub, "train", cmd_train, help="DPO-train the policy on the labels collected so far")
    s.add_argument("--round", type=int, help="round whose labels (cumulative by default) to train on")
    s = add_command(
        sub, "evaluate", cmd_evaluate, help="win rate of a checkpoint vs the initial policy on the eval split"
    )
    s.add_argument("--checkpoint", help="checkpoint id (default: the latest)")
    s = add_command(
        sub, "export", cmd_export, help="write collected preferences as a TRL/datasets-loadable file"
    )
    s.add_argument("--format", choices=["trl"], default="trl")
    s.add_argument("out", help="output file (.jsonl or .parquet)")
    add_command(
        sub, "export-model", cmd_export_model, help="print the directory of the latest trained checkpoint"
    )
