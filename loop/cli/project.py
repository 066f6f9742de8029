"""Project commands: `init`, `db upgrade|downgrade|current`, `ingest` and `status`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loop.cli.common import UserError, add_command, config_from, open_engine, print_json
from storage.errors import PvarLoopError


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
    down = dbs.add_parser("downgrade", help="migrate down to a revision ('base' empties it)")
    down.add_argument("revision")
    down.add_argument(
        "--force",
        action="store_true",
        help="downgrade even though it drops data (SQLite: a backup is written first)",
    )
    dbs.add_parser("current", help="show the current and head revisions")

    s = add_command(
        sub, "ingest", cmd_ingest, help="add prompts from JSONL, CSV, Parquet or a saved datasets directory"
    )
    s.add_argument("file")
    s.add_argument("--split", choices=["train", "eval"], default="train")
    s.add_argument("--skip-invalid", action="store_true", help="write valid rows, report the rest")

    s = add_command(
        sub, "status", cmd_status, help="pool, rounds (items, answers, decided, ties) and evaluations"
    )
    s.add_argument("--json", action="store_true")


def cmd_init(args: argparse.Namespace) -> int:
    from loop.config import CONFIG_FILENAME, default_config_toml
    from storage.migrate import upgrade
    from storage.private import write_private_text

    target = Path(args.config or CONFIG_FILENAME)
    if target.exists() and not args.force:
        print(f"{target} exists; keeping it (use --force to overwrite)")
    else:
        try:  # private: the operator may put an API key or a database password in it
            write_private_text(target, default_config_toml())
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
    for line in init_notes(cfg):
        print(line)
    return 0


def init_notes(cfg) -> list[str]:
    """What an operator must know before the first round: who judges, and any model that is not here."""
    from loop.ml.loading import available_offline

    e = cfg.evaluation
    notes = []
    if e.judge == "human":
        notes.append(
            f'evaluation: judge = "human": after each round\'s training, annotators compare the new and the initial '
            f"policy on up to {e.human_prompts} eval prompts (dataset {cfg.argilla.dataset}-eval); "
            '[evaluation] judge = "verifier" for prompts with checkable constraints, or a reward model of its own'
        )
    for key, model in (("[policy] model", cfg.policy.model), ("[reward] model", cfg.reward.model)):
        if not available_offline(model):
            notes.append(
                f"models: {key} = {model!r} is not here (no local directory, not in the Hugging Face cache): "
                f"download it while online (`hf download {model}`) or set {key} to a local directory"
            )
    return notes


def cmd_db(args: argparse.Namespace) -> int:
    from storage import migrate

    engine = open_engine(config_from(args), check_head=False, create=args.db_command == "upgrade")
    if args.db_command == "upgrade":
        migrate.upgrade(engine, args.revision)
    elif args.db_command == "downgrade":
        _downgrade(engine, args.revision, force=args.force)
    current = migrate.current_revision(engine)
    newer = " (newer than this pvar-loop)" if migrate.is_newer(current) else ""
    print(f"current revision: {current or '(empty database)'}{newer}; head: {migrate.head_revision()}")
    return 0


def _downgrade(engine, revision: str, *, force: bool) -> None:
    """A downgrade that drops data says what and needs --force; on SQLite a backup is written first."""
    from storage.downgrade import backup_sqlite, downgrade_loss
    from storage.migrate import downgrade

    loss = downgrade_loss(engine, revision)
    sqlite = engine.dialect.name == "sqlite"
    if loss and not force:
        backup = (
            "a backup of the SQLite file is written first"
            if sqlite
            else "back the database up first (pg_dump)"
        )
        raise UserError(
            f"downgrading to {revision} drops {loss.describe()}; {backup}, and rerun with --force to go ahead"
        )
    if loss and sqlite:
        print(f"backup written: {backup_sqlite(engine)}")
    downgrade(engine, revision)
    if loss:
        print(f"dropped {loss.describe()}")


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
    from loop.cli.rounds import rounds_with_next
    from loop.cli.status_view import NO_AGREEMENT, late_answer_json, render, round_agreements
    from loop.evaluation.audit import audit_summary
    from loop.quality.inputs import annotator_reliability
    from loop.rounds.operator_settings import new_rounds_status
    from loop.rounds.scheduler import scheduler_status
    from storage.db import UnitOfWork
    from storage.repositories import queries
    from storage.repositories.exclusions import exclusions
    from storage.repositories.items import audit_outcomes
    from storage.repositories.labels import late_answers
    from storage.repositories.operator_commands import recent_commands
    from storage.repositories.reward_refreshes import refresh_rows
    from storage.repositories.scores import reward_exclusion_counts

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    rounds = rounds_with_next(cfg, uow, arm=None)  # live numbers and the next by-hand command
    with uow() as session:
        agreements = round_agreements(queries.round_label_choices(session))
        for r in rounds:
            r["agreement"] = agreements.get((r["arm"], r["number"]), NO_AGREEMENT)
        status = {
            "database": _database_url(cfg),
            "pool": queries.pool_summary(session),
            "rounds": rounds,
            "answers": queries.label_count(session),
            "annotators": queries.answers_per_annotator(session),
            "reliability": annotator_reliability(session, cfg.quality),
            "excluded_annotators": [
                {
                    "annotator": e.annotator,
                    "since": e.since.isoformat(timespec="seconds"),
                    "by": e.by,
                    "reason": e.reason,
                }
                for e in exclusions(session)
            ],
            "late_answers": [late_answer_json(a) for a in late_answers(session)],
            "evaluations": queries.evaluations_summary(session),
            "operator_actions": queries.recent_actions(session),
            "operator_commands": recent_commands(session),
            "scheduler": scheduler_status(session, cfg),
            "new_rounds": new_rounds_status(session, cfg),
            "audit": audit_summary(audit_outcomes(session)),
            "judge_warning": cfg.judge_warning,
            "reward_refresh": refresh_rows(session),
            "reward_exclusions": [
                {"checkpoint": c, "reward_model": rm, "reason": why, "samples": n}
                for c, rm, why, n in reward_exclusion_counts(session)
            ],
        }
    status["drafts"] = argilla_drafts(cfg)
    if args.json:
        print_json(status)
        return 0
    print("\n".join([*render(status), *drafts_lines(status["drafts"])]))
    return 0


def argilla_drafts(cfg) -> dict | None:
    """{"by_annotator": {name: drafts}} read from Argilla, {"error": why} when it cannot be read, None when no
    Argilla is configured or running. One quick try: `status` must not hang on an Argilla that is down."""
    import httpx

    from annotation.api import Backoff, connect
    from annotation.dataset import open_dataset
    from annotation.progress import drafts_by_annotator
    from loop.argilla_client import ArgillaConfigError, argilla_target

    try:
        url, key = argilla_target(cfg)
    except ArgillaConfigError:
        return None
    once = Backoff(attempts=1)
    try:
        dataset = open_dataset(
            connect(url, key, timeout=5, backoff=once), cfg.argilla.dataset, cfg.argilla.workspace
        )
        return {"by_annotator": {} if dataset is None else drafts_by_annotator(dataset, backoff=once)}
    except (PvarLoopError, httpx.HTTPError) as e:
        return {"error": str(e)}


def drafts_lines(drafts: dict | None) -> list[str]:
    if not drafts:
        return []
    if "error" in drafts:
        return [f"drafts: not read from Argilla ({drafts['error']})"]
    if not drafts["by_annotator"]:
        return []
    who = ", ".join(f"{name} {n}" for name, n in drafts["by_annotator"].items())
    return [
        f"drafts saved, not submitted (not answers): {who}; a saved draft leaves the annotator's queue "
        '("You have no pending records"): ask them to open the Draft filter and submit'
    ]


def _database_url(cfg) -> str:
    from sqlalchemy.engine import make_url

    return make_url(cfg.database_url).render_as_string(hide_password=True)
