"""Sub-commands for retraining: train, evaluate, export, export-model."""

from __future__ import annotations

import argparse
from pathlib import Path

from loop.cli.common import UserError, add_command, holding_lease, open_uow
from storage.statuses import PRODUCTION_ARM, RoundStatus, is_production_arm


def _of_arm(arm: str) -> str:
    return "" if is_production_arm(arm) else f" of arm {arm}"


def _round(uow, number: int | None, arm: str):
    from storage.repositories.rounds import latest_labelled_round, round_by_number

    with uow() as session:
        rnd = latest_labelled_round(session, arm) if number is None else round_by_number(session, number, arm)
        if rnd is None:
            raise UserError(
                f"no round {number}{_of_arm(arm)}"
                if number is not None
                else f"no round{_of_arm(arm)} has labels yet (`pvar-loop round status` names the next step)"
            )
        return rnd.id, rnd.number, rnd.status


# The stages a by-hand `train` runs, as the scheduler does: collection check, DPO + evaluation, closing.
TRAIN_STAGES = (RoundStatus.COLLECTING, RoundStatus.TRAINING, RoundStatus.EVALUATING, RoundStatus.EVALUATED)


def cmd_train(args: argparse.Namespace) -> int:
    from loop.rounds.training import train_round

    cfg, uow = open_uow(args)
    round_id, number, status = _round(uow, args.round, args.arm)
    name = f"round {number}{_of_arm(args.arm)}"
    if status.frees_prompts:
        raise UserError(
            f"{name} is {status}: its labels are kept but never trained on (`pvar-loop export "
            "--include-cancelled` writes them out); nothing was trained"
        )
    if status.is_closed:  # a retrain: a new checkpoint, the round's record stays as it was
        checkpoint = train_round(cfg, uow, round_id)
        print(f"{name} ({status}, unchanged): checkpoint {checkpoint}")
        return 0
    if status not in TRAIN_STAGES:
        from loop.rounds.state import NEXT_WORK, advance_command

        raise UserError(
            f"{name} is {status}: its labels are not collected yet; next: "
            f"`{advance_command(number, args.arm)}` ({NEXT_WORK[status]})"
        )
    return _finish_round(cfg, uow, round_id, name)


def _finish_round(cfg, uow, round_id: int, name: str) -> int:
    """Run the open round's remaining steps exactly as the scheduler would, then say what they recorded."""
    from loop.rounds.state import Services, drive
    from storage.models import Round
    from storage.repositories.evaluations import evaluations_of

    with holding_lease(cfg, uow):
        status = drive(uow, cfg, round_id, Services.default(), through=TRAIN_STAGES)
    with uow() as session:
        rnd = session.get(Round, round_id)
        if status == RoundStatus.COLLECTING:
            from loop.rounds.state import collection_done

            wait = collection_done(session, cfg, rnd)
            why = rnd.reason or (wait.reason if wait is not None else "")
            raise UserError(f"{name} cannot be trained yet: {why}; nothing was trained")
        if status == RoundStatus.EVALUATING:
            from loop.rounds.state import next_step

            waits = next_step(session, cfg, rnd).waits
            print(f"{name}: evaluating; policy {rnd.policy_out}: {waits}; run this again once answered")
            return 0
        policy, reason = rnd.policy_out, rnd.reason
        evals = evaluations_of(session, policy) if policy != rnd.policy_in else []
    print(f"{name}: {status}; policy {policy}" + (f" ({reason})" if reason else ""))
    for ev in evals:
        _print_eval(ev)
    return 0


def _print_eval(ev) -> None:
    d = ev.details or {}
    score = ""
    if d.get("policy_ci_low") is not None:
        score = (
            f", mean score {d['policy_mean']:.3f} [{d['policy_ci_low']:.3f}, {d['policy_ci_high']:.3f}] "
            f"vs {d['reference_mean']:.3f} ({d.get('samples_per_prompt')} samples per prompt)"
        )
    print(
        f"{ev.checkpoint_id} vs {ev.reference_id}: win rate {ev.win_rate:.3f} [{ev.ci_low:.3f}, "
        f"{ev.ci_high:.3f}]{score} on {ev.n_prompts} eval prompts ({ev.judge})"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from loop.rounds.evaluating import evaluate_checkpoint
    from loop.rounds.waits import Wait
    from storage.models import Checkpoint, Round
    from storage.repositories.checkpoints import latest_checkpoint

    cfg, uow = open_uow(args)
    checkpoint = args.checkpoint
    with uow() as session:
        if checkpoint is None:
            latest = latest_checkpoint(session)
            if latest is None:
                raise UserError("no trained checkpoint yet (run `pvar-loop train`)")
            checkpoint = latest.id
        ckpt = session.get(Checkpoint, checkpoint)
        rnd = session.get(Round, ckpt.round_id) if ckpt is not None and ckpt.round_id else None
        open_stage = rnd is not None and rnd.status in TRAIN_STAGES[1:]
        round_id = rnd.id if rnd is not None else None
        name = f"round {rnd.number}{_of_arm(rnd.arm)}" if rnd is not None else ""
    if open_stage:  # the round's training is recorded: evaluating finishes it, as the scheduler would
        return _finish_round(cfg, uow, round_id, name)
    result = evaluate_checkpoint(cfg, uow, checkpoint)
    if isinstance(result, Wait):  # a human evaluation still waiting for answers
        print(f"{checkpoint}: {result.reason}; run this again once answered")
    else:
        _print_eval(result)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from loop.export import export_preferences

    _, uow = open_uow(args)
    with uow() as session:
        n = export_preferences(
            session,
            Path(args.out),
            include_cancelled=args.include_cancelled,
            include_ties=args.include_ties,
            include_late=args.include_late,
        )
    extra = [
        *(["cancelled rounds included"] if args.include_cancelled else []),
        *(["ties included (decision 'tie')"] if args.include_ties else []),
        *(
            ["late answers listed (late_annotators, late_choices, late_rationales)"]
            if args.include_late
            else []
        ),
    ]
    print(
        f"wrote {n} preference pairs to {args.out} (TRL conversational format: prompt/chosen/rejected, plus "
        "decision, annotators, choices, rationales, round, arm, prompt_id, source_id)"
        + "".join(f", {e}" for e in extra)
    )
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
    s.add_argument(
        "--arm", default=PRODUCTION_ARM, help=f"experiment arm of the round (default: {PRODUCTION_ARM})"
    )
    s = add_command(
        sub, "evaluate", cmd_evaluate, help="win rate of a checkpoint vs the initial policy on the eval split"
    )
    s.add_argument("--checkpoint", help="checkpoint id (default: the latest)")
    s = add_command(
        sub, "export", cmd_export, help="write collected preferences as a TRL/datasets-loadable file"
    )
    s.add_argument("--format", choices=["trl"], default="trl")
    s.add_argument("out", help="output file (.jsonl or .parquet)")
    s.add_argument(
        "--include-cancelled",
        action="store_true",
        help="also the decided pairs of cancelled (or failed) rounds, left out by default",
    )
    s.add_argument(
        "--include-ties",
        action="store_true",
        help="also the pairs the annotators judged a tie (decision 'tie'), e.g. for reward-model data; "
        "drop them for DPO",
    )
    s.add_argument(
        "--include-late",
        action="store_true",
        help="also list, per pair, the answers given or changed after its round stopped collecting (not used "
        "by its decision): late_annotators, late_choices, late_rationales",
    )
    add_command(
        sub, "export-model", cmd_export_model, help="print the directory of the latest trained checkpoint"
    )
