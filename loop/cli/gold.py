"""`pvar-loop gold add|list`: the operator's gold (honeypot) items, mixed into rounds' queues by
[argilla] gold_per_round (annotation.gold). Registered by loop.cli.app."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loop.cli.common import add_command, config_from, open_engine, print_json


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(
        sub, "gold", cmd_gold, help="gold items: pairs with a known answer that measure annotators"
    )
    gs = s.add_subparsers(dest="gold_command", required=True)
    add = gs.add_parser(
        "add",
        help="add gold items from JSONL or CSV (prompt, response_a, response_b, expected a|b|tie, rationale)",
    )
    add.add_argument("file")
    retire = gs.add_parser(
        "retire", help="stop placing a gold item in rounds' queues (its answers stay and still measure)"
    )
    retire.add_argument("id", type=int, help="the gold item's id (`gold list`)")
    gs.add_parser("list", help="every gold item and how often it was shown and answered").add_argument(
        "--json", action="store_true"
    )


def cmd_gold(args: argparse.Namespace) -> int:
    from storage.db import UnitOfWork

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    if args.gold_command == "add":
        return _add(uow, Path(args.file))
    if args.gold_command == "retire":
        return _retire(uow, args.id)
    return _list(uow, cfg, args.json)


def _add(uow, path: Path) -> int:
    from loop.gold import add_gold_file

    with uow() as session:  # GoldFileError rolls the whole file back
        report = add_gold_file(session, path)
    if note := report.pool_note():
        print(f"note: {note}", file=sys.stderr)
    print(report.summary())
    return 0


def _retire(uow, gold_id: int) -> int:
    from loop.cli.common import UserError
    from storage.repositories.gold import retire_gold

    with uow() as session:
        item = retire_gold(session, gold_id)
        if item is None:
            raise UserError(f"no gold item {gold_id} (`pvar-loop gold list` shows their ids)")
        since = f"{item.retired_at:%Y-%m-%d %H:%M} UTC"
    print(f"gold item {gold_id} retired since {since}: no longer placed; its answers stay")
    return 0


def _list(uow, cfg, as_json: bool) -> int:
    from storage.repositories.gold import gold_summaries

    with uow() as session:
        rows = [
            {
                "id": g.id,
                "key": g.key,
                "expected": g.expected,
                "shown": g.shown,
                "answers": g.answers,
                "correct": g.correct,
                "source": g.source,
                "source_id": g.source_id,
                "rationale": g.rationale,
                "prompt": g.prompt,
                "retired_at": g.retired_at.isoformat() if g.retired_at else None,
            }
            for g in gold_summaries(session)
        ]
    if as_json:
        print_json(rows)
        return 0
    if not rows:
        print("no gold items (`pvar-loop gold add FILE`)")
        return 0
    per_round = cfg.argilla.gold_per_round
    print(f"{len(rows)} gold items ([argilla] gold_per_round = {per_round}):")
    print(f"  {'id':>4} {'expected':<8} {'shown':>5} {'answers':>7} {'correct':>7}  prompt")
    for r in rows:
        prompt = " ".join(r["prompt"].split())
        prompt = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        retired = " (retired)" if r["retired_at"] else ""
        print(
            f"  {r['id']:>4} {r['expected']:<8} {r['shown']:>5} {r['answers']:>7} {r['correct']:>7}  "
            f"{prompt}{retired}"
        )
    return 0
