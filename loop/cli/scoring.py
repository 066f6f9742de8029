"""`pvar-loop score` and `pvar-loop select`."""

from __future__ import annotations

import argparse

from loop.acquisition.strategies import PRODUCTION_STRATEGIES  # numpy only: `--help` stays fast
from loop.cli.common import (
    UserError,
    add_command,
    config_from,
    non_negative_int,
    open_engine,
    positive_int,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(
        sub,
        "score",
        cmd_score,
        help="sample K responses per unscored train prompt, reward them, store PVar and reward gap",
    )
    s.add_argument("--limit", type=positive_int, help="score at most N prompts in this run")
    s.add_argument("--checkpoint", help="checkpoint id to score (default: the initial policy, policy.model)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print the run report as JSON")

    s = add_command(
        sub,
        "select",
        cmd_select,
        help="show which prompts a strategy would pick from the scored, unlabelled pool",
    )
    # The strategies config and `strategy set` accept: an experiment-only arm would rank like plain random here.
    s.add_argument("--strategy", choices=list(PRODUCTION_STRATEGIES), help="default: selection.strategy")
    s.add_argument("--budget", type=non_negative_int, help="prompts to pick (default: selection.budget)")
    s.add_argument("--seed", type=int, help="random tie-breaks and the random arm (default: selection.seed)")
    s.add_argument("--checkpoint", help="policy whose scores rank the pool (default: the initial policy)")
    s.add_argument("--json", action="store_true")


def cmd_score(args: argparse.Namespace) -> int:
    from loop.ml.loading import ModelLoadError
    from loop.scoring.pool import score_with_config
    from storage.db import UnitOfWork

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    try:
        report = score_with_config(
            cfg, uow, args.limit, checkpoint_id=args.checkpoint, progress=not args.no_progress
        )
    except ModelLoadError as e:
        raise UserError(str(e)) from e
    except ImportError as e:  # e.g. backend "vllm" without vllm installed; the message says what to install
        raise UserError(str(e)) from e
    if args.json:
        print_json(
            {
                "checkpoint": report.checkpoint_id,
                "reward_model": report.reward_model,
                "k": report.k,
                "scored": report.scored,
                "excluded": [{"prompt_id": p, "reason": r} for p, r in report.excluded],
                "skipped": [{"prompt_id": p, "reason": r} for p, r in report.skipped],
                "responses_unread": report.responses_unread,
                "batches": report.batches,
                "tokens_generated": report.tokens_generated,
                "elapsed_s": round(report.elapsed_s, 3),
                "prompts_per_s": round(report.prompts_per_s, 3),
                "tokens_per_s": round(report.tokens_per_s, 1),
                "remaining": report.remaining,
            }
        )
    else:
        print(report.summary())
        for prompt_id, reason in report.excluded:
            print(f"excluded {prompt_id}: {reason}")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from loop.rounds.selection import choose
    from loop.scoring.pool import selection_reward_model
    from storage.db import UnitOfWork
    from storage.repositories.checkpoints import initial_checkpoint_id

    cfg = config_from(args)
    sel = cfg.selection
    strategy = args.strategy or sel.strategy
    budget = sel.budget if args.budget is None else args.budget
    seed = sel.seed if args.seed is None else args.seed
    with UnitOfWork(open_engine(cfg))() as session:
        checkpoint_id = args.checkpoint or initial_checkpoint_id(cfg.policy.model)
        among = _drawn_not_picked(session)
        selection = choose(
            session,
            checkpoint_id=checkpoint_id,
            reward_model=selection_reward_model(session, cfg),
            strategy=strategy,
            budget=budget,
            seed=seed,
            audit_fraction=sel.audit_fraction,
            among_round=among,
        )
    if args.json:
        print_json({**selection.as_dict(), "among_round": among})
        return 0
    drawn = sel.candidate_count(budget)
    if among is not None:
        print(f"among the candidates the open round (id {among}) drew; it picks from these only")
    elif drawn is not None and drawn < selection.pool:
        print(
            f"note: a round draws [selection] candidates = {drawn} of the free prompts at random and picks "
            f"among those; this ranks all {selection.pool}"
        )
    print(
        f"{strategy}, budget {budget}, seed {seed}: {len(selection.picks)} of {selection.pool} free scored "
        f"prompts ({selection.taken} taken by rounds or labelled, {selection.unscored} not scored yet)"
    )
    if selection.audits:
        print(
            f"{selection.audits} of them (marked 'audit') drawn at random from the prompts {strategy} did not "
            f"pick ([selection] audit_fraction = {selection.audit_fraction})"
        )
    if selection.shortfall:
        print(
            f"note: the budget {budget} is larger than the pool of {selection.pool} free scored prompts; "
            f"all {selection.pool} would be selected ({selection.shortfall} short)"
        )
    # The source id (the operator's own, from ingest) is what they recognise; the hash only identifies it here.
    width = max([9, *(len(p.source_id or "-") for p in selection.picks)])
    width = min(width, 24)
    if selection.picks:
        print(
            f"{'rank':>4}  {'pvar':>8}  {'gap':>8}  {'pick':<5}  {'source id':<{width}}  {'prompt id':<12}  prompt"
        )
    for p in selection.picks:
        text = " ".join(p.text.split())
        text = text if len(text) <= 60 else text[:57] + "..."
        pick = "audit" if p.audit else "top"
        source = _fit(p.source_id or "-", width)
        print(
            f"{p.rank:>4}  {p.pvar:8.5f}  {p.reward_gap:8.4f}  {pick:<5}  {source:<{width}}  "
            f"{p.prompt_id[:12]:<12}  {text}"
        )
    return 0


def _drawn_not_picked(session) -> int | None:
    """The open round's id when it has drawn its candidates but not picked yet: `select` previews its pick."""
    from loop.rounds.candidates import selection_round
    from storage.repositories.rounds import item_status_counts, open_round

    rnd = open_round(session)
    if rnd is None or sum(item_status_counts(session, rnd.id).values()):
        return None
    return selection_round(session, rnd.id)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
