"""`pvar-loop reward-model train`: refresh the selection reward model from the human labels collected so far.

Trains on every decided a/b label in the database, writes <data_dir>/reward-models/<id> (id from a hash of the
labels, the base model and the settings, so re-running on unchanged labels reuses the checkpoint) and prints
held-out accuracy, agreement with the rule-based verifier where prompts carry constraints, and the config line
that switches selection to the new model.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from loop.cli.common import UserError, add_command, config_from, open_engine, positive_int


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(sub, "reward-model", cmd_reward_model, help="the learned selection reward model")
    rm = s.add_subparsers(dest="rm_command", required=True)
    t = rm.add_parser(
        "train",
        help="train a reward model (TRL RewardTrainer) on all decided labels; report held-out accuracy",
    )
    t.add_argument("--base", help="model to start from, hub id or directory (default: [reward] model)")
    t.add_argument("--out", help="checkpoint directory (default: <data_dir>/reward-models/<id>)")
    t.add_argument(
        "--epochs",
        type=positive_int,
        help="passes over the training pairs (default: [reward_training] epochs)",
    )
    t.add_argument(
        "--lr",
        type=_positive_float,
        help="learning rate (default: [reward_training] learning_rate; tiny random models ~1e-3)",
    )


def _labelled_pairs(uow) -> tuple[list, dict[str, list]]:
    """Decided pairs and, per prompt text, the verifier constraints its metadata carries (if any)."""
    from storage.repositories.items import decided_items
    from storage.repositories.prompts import constraints_by_text

    with uow() as session:
        pairs = decided_items(session)
        found = constraints_by_text(session, prompt_ids=[p.prompt_id for p in pairs])
        constraints = {text: c for text, c in found.items() if c}
    return pairs, constraints


def _settings(cfg, args: argparse.Namespace):
    """[reward_training] with the command line's overrides (the settings a round's refresh trains with)."""
    from loop.rounds.reward_refresh import reward_train_settings

    return reward_train_settings(cfg, learning_rate=args.lr, epochs=args.epochs)


def cmd_reward_model(args: argparse.Namespace) -> int:
    from loop.evaluation.verifier import gold_by_prompt
    from loop.ml.reward_model import RewardCheckpointConflict, reward_data_hash, train_or_reuse
    from storage.db import UnitOfWork

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    pairs, constraints = _labelled_pairs(uow)
    if not pairs:
        raise UserError(
            "no decided a/b labels in the database yet (ties, discards and undecided items carry no "
            "preference); collect some with `pvar-loop pull` first; nothing was written"
        )
    base = args.base or cfg.reward.model
    try:
        settings = _settings(cfg, args)
    except ValueError as e:
        raise UserError(f"[reward] settings unusable for training: {e}") from None
    data_hash = reward_data_hash(pairs, base, settings)
    out = Path(args.out) if args.out else cfg.paths.data_dir / "reward-models" / f"rm-{data_hash[:12]}"
    judge = gold_by_prompt(constraints) if constraints else None

    if not out.exists():
        print(f"training a reward model from {base} on {len(pairs)} decided labels ...", flush=True)
    try:
        result, reused = train_or_reuse(pairs, base_dir=base, output_dir=out, settings=settings, judge=judge)
    except RewardCheckpointConflict as e:
        raise UserError(str(e)) from None
    if reused:
        print(f"already trained on these {len(pairs)} labels with these settings: reusing {out}")
    _report(result, base, judge is not None)
    _compare_current(cfg, pairs, settings, result)
    return 0


def _compare_current(cfg, pairs, settings, result) -> None:
    """The configured [reward] model's accuracy on the same held-out pairs, to judge whether to switch."""
    from loop.ml.loading import ModelLoadError
    from loop.ml.reward_model import evaluate_reward_model, split_pairs

    _, heldout = split_pairs(pairs, settings.heldout_fraction)
    if not heldout or Path(cfg.reward.model).resolve() == Path(result.checkpoint_dir).resolve():
        return
    try:
        current = evaluate_reward_model(
            cfg.reward.model, heldout, max_length=settings.max_length, batch_size=cfg.reward.batch_size
        )
    except ModelLoadError as e:
        print(f"current [reward] model: not compared ({e})")
        return
    print(
        f"current [reward] model {cfg.reward.model}: held-out accuracy {current.accuracy:.3f} on the same pairs"
    )


def _report(result, base: str, has_constraints: bool) -> None:
    per_step = result.seconds / max(result.steps, 1)
    print(
        f"trained on {result.n_train} pairs from {base}: {result.steps} steps in {result.seconds:.1f} s "
        f"({per_step:.2f} s/step); train accuracy {result.train_accuracy:.3f}"
    )
    if result.heldout_accuracy is None:
        print("held-out accuracy: n/a (too few distinct prompts to hold any out; all pairs were trained on)")
    else:
        right = round(result.heldout_accuracy * result.n_heldout)
        print(
            f"held-out accuracy: {result.heldout_accuracy:.3f} ({right}/{result.n_heldout} held-out pairs "
            "scored chosen above rejected)"
        )
    if has_constraints:
        if result.judge_agreement is None:
            print(
                "verifier agreement: n/a (the verifier ties every held-out pair or none carries constraints)"
            )
        else:
            print(
                f"verifier agreement: {result.judge_agreement:.3f} on the {result.n_judged} held-out pairs the "
                "rule-based verifier orders"
            )
    path = Path(result.checkpoint_dir).resolve()
    print(f"checkpoint: {path}")
    print("to select with it, set in your config (then re-score the pool: PVar depends on the reward model):")
    print(f'  [reward]\n  model = "{path}"')
