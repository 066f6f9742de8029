"""Project commands: `init`, `db upgrade|downgrade|current`, `ingest` and `status`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loop.cli.common import UserError, add_command, config_from, open_engine, print_json


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(
        sub, "init", cmd_init, help="write a commented default config and create/migrate the database"
    )
    s.add_argument("--force", action="store_true", help="overwrite an existing config file")

    s = add_command(sub, "db", cmd_db, help="database migrations")
    dbs = s.add_subparsers(dest="db_command", required=True)
    dbs.add_parser("upgrade", help="migrate to a revision (default head)").add_argument(
        "revision", nargs="?", default="head"
    )
    dbs.add_parser("downgrade", help="migrate down to a revision ('base' empties it)").add_argument(
        "revision"
    )
    dbs.add_parser("current", help="show the current and head revisions")

    s = add_command(
        sub, "ingest", cmd_ingest, help="add prompts from JSONL, CSV, Parquet or a saved datasets directory"
    )
    s.add_argument("file")
    s.add_argument("--split", choices=["train", "eval"], default="train")
    s.add_argument("--skip-invalid", action="store_true", help="write valid rows, report the rest")

    s = add_command(sub, "status", cmd_status, help="pool, rounds, labels and evaluations")
    s.add_argument("--json", action="store_true")


def cmd_init(args: argparse.Namespace) -> int:
    from loop.config import CONFIG_FILENAME, default_config_toml
    from storage.migrate import upgrade

    target = Path(args.config or CONFIG_FILENAME)
    if target.exists() and not args.force:
        print(f"{target} exists; keeping it (use --force to overwrite)")
    else:
        tmp = target.with_suffix(".tmp")
        try:
            tmp.write_text(default_config_toml(), encoding="utf-8")
            tmp.replace(target)
        except OSError as e:
            raise UserError(f"cannot write config {target}: {e.strerror or e}") from e
        print(f"wrote {target}")
    cfg = config_from(argparse.Namespace(config=str(target)))
    try:
        cfg.paths.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"[paths] data_dir: cannot create {cfg.paths.data_dir}: {e.strerror or e}") from e
    engine = open_engine(cfg, check_head=False, create=True)
    upgrade(engine)
    print(f"database ready: {engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from storage import migrate

    engine = open_engine(config_from(args), check_head=False, create=args.db_command == "upgrade")
    if args.db_command == "upgrade":
        migrate.upgrade(engine, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(engine, args.revision)
    current = migrate.current_revision(engine)
    newer = " (newer than this pvar-loop)" if migrate.is_newer(current) else ""
    print(f"current revision: {current or '(empty database)'}{newer}; head: {migrate.head_revision()}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from loop.ingest import ingest_file, write_reject_report
    from storage.db import UnitOfWork

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    with uow() as session:
        report = ingest_file(
            session,
            Path(args.file),
            split=args.split,
            max_chars=cfg.pool.max_prompt_chars,
            skip_invalid=args.skip_invalid,
        )
    write_reject_report(report, cfg.paths.data_dir / "rejects")
    for warning in report.warnings:
        print(f"warning: {Path(args.file).name}: {warning}", file=sys.stderr)
    if report.warning_count > len(report.warnings):
        print(f"warning: ... and {report.warning_count - len(report.warnings)} more", file=sys.stderr)
    print(report.summary())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from loop.cli.rounds import describe_next, rounds_with_next
    from loop.evaluation.audit import audit_summary
    from loop.rounds.operator_settings import new_rounds_status
    from loop.rounds.scheduler import scheduler_status
    from storage.db import UnitOfWork
    from storage.repositories import queries
    from storage.repositories.items import audit_outcomes
    from storage.repositories.reward_refreshes import refresh_rows

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    rounds = rounds_with_next(cfg, uow, arm=None)  # live numbers and the next by-hand command
    with uow() as session:
        status = {
            "database": _database_url(cfg),
            "pool": queries.pool_summary(session),
            "rounds": rounds,
            "labels": queries.label_count(session),
            "annotators": queries.answers_per_annotator(session),
            "evaluations": queries.evaluations_summary(session),
            "operator_actions": queries.recent_actions(session),
            "scheduler": scheduler_status(session, cfg),
            "new_rounds": new_rounds_status(session, cfg),
            "audit": audit_summary(audit_outcomes(session)),
            "judge_warning": cfg.judge_warning,
            "reward_refresh": refresh_rows(session),
        }
    if args.json:
        print_json(status)
        return 0
    pool = status["pool"]
    print(f"database: {status['database']}")
    print(
        f"pool: {pool['prompts'] or 'empty'}; train scored {pool['train_scored']}, "
        f"unscored {pool['train_unscored']}"
    )
    print(f"labels collected: {status['labels']}")
    for line in _annotator_lines(status):
        print(line)
    print(status["audit"]["sentence"])
    print(_scheduler_line(status["scheduler"]))
    new = status["new_rounds"]
    if new["paused"]:
        print(f"new rounds: paused ({new['why']})")
    else:
        print(f"new rounds: round {new['next_round']} next, {new['strategy']} budget {new['budget']}")
    for r in status["rounds"]:
        why = f" ({r['reason']})" if r["reason"] else ""
        print(
            f"round {r['arm']}/{r['number']}: {r['status']}{why}; {r['strategy']} budget {r['budget']}, "
            f"{r['items']} items, {r['answered']} answered, {r['decided']} decided, {r['labels']} labels"
        )
        if r["next"] is not None:
            print(f"  {describe_next(r['next'])}")
    for r in status["reward_refresh"]:
        print(refresh_line(r))
    for e in status["evaluations"]:
        print(
            f"eval {e['checkpoint']} vs {e['reference']}: win rate {e['win_rate']:.3f} "
            f"[{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]{score_text(e)} n={e['n']} ({e['judge']})"
        )
    if status["judge_warning"]:
        print(f"warning: {status['judge_warning']}")
    for a in status["operator_actions"]:
        print(f"action {a['at']} {a['actor']}: {a['action']} {a['payload']}")
    return 0


def _annotator_lines(status: dict) -> list[str]:
    """Who answered how much (pulled answers in our database; `pull` first for the latest)."""
    return [
        f"  annotator {a['username']}: {a['submitted']} submitted, {a['discarded']} discarded"
        for a in status["annotators"]
    ]


def score_text(e: dict) -> str:
    """ ", mean score m [l, h] vs r" of an evaluation summary; "" for one stored without mean scores."""
    mean, (low, high) = e.get("score_mean"), e.get("score_ci") or (None, None)
    if mean is None or low is None or high is None:
        return ""
    ref = e.get("reference_score_mean")
    versus = "" if ref is None else f" vs {ref:.3f}"
    return f", mean score {mean:.3f} [{low:.3f}, {high:.3f}]{versus}"


def refresh_line(r: dict) -> str:
    """One reward-model refresh (storage.repositories.reward_refreshes.refresh_rows) as a status line."""

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    head = f"reward model refresh after round {r['round']}: {r['n_pairs']} decided labels, {r['n_heldout']} held out"
    if r["candidate_model"] is None:
        return f"{head}; not refreshed ({r['reason']})"
    verdict = f"kept {r['candidate_model']}" if r["kept"] else f"not kept, {r['previous_model']} stays"
    return f"{head}; agreement old {share(r['old_agreement'])}, new {share(r['new_agreement'])}: {verdict}"


def _scheduler_line(s: dict) -> str:
    if s["state"] == "not running":
        return "scheduler: not running (`pvar-loop run` starts it; or advance rounds by hand)"
    if s["state"] == "stale":
        return (
            f"scheduler: stale lease held by {s['holder']} (no heartbeat for {s['heartbeat_age_s']:.0f} s: "
            "presumed dead; the next `pvar-loop run` takes over)"
        )
    return (
        f"scheduler: running, {s['holder']} (heartbeat {s['heartbeat_age_s']:.0f} s ago, since {s['since']})"
    )


def _database_url(cfg) -> str:
    from sqlalchemy.engine import make_url

    return make_url(cfg.database_url).render_as_string(hide_password=True)
