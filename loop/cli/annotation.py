"""`pvar-loop argilla up|down|status`, `push` and `pull` (`annotators` is in loop.cli.annotators): registered
by loop.cli.app.

Which Argilla: [argilla] url/api_key (or PVAR_LOOP_ARGILLA_URL / PVAR_LOOP_ARGILLA_API_KEY); without a key,
the local stack that `argilla up` started under <data_dir>/argilla (its state file holds the owner key).
Keys and passwords are never logged.
"""

from __future__ import annotations

import argparse

from loop.cli.common import (
    UserError,
    add_command,
    config_from,
    open_engine,
    positive_int,
    print_annotator_links,
    print_json,
)
from storage.statuses import PRODUCTION_ARM, RoundStatus


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(
        sub,
        "argilla",
        cmd_argilla,
        help="start, stop or inspect the local Argilla server (<data_dir>/argilla)",
    )
    a = s.add_subparsers(dest="argilla_command", required=True)
    up = a.add_parser(
        "up", help="start Redis, the search engine, Argilla and its worker; print how to sign in"
    )
    up.add_argument(
        "--port", type=positive_int, help="server port (default: the port of [argilla] url, e.g. 6900)"
    )
    down = a.add_parser(
        "down",
        help="stop the processes `up` started; the data stays for the next `up` (refused while answers "
        "are unpulled)",
    )
    down.add_argument("--force", action="store_true", help="stop even though answers are not pulled yet")
    down.add_argument(
        "--purge", action="store_true", help="also delete the stack's data: records, answers, users"
    )
    a.add_parser("status", help="processes, memory and whether the API answers").add_argument(
        "--json", action="store_true"
    )

    s = add_command(sub, "push", cmd_push, help="send a round's annotation items to Argilla (safe to re-run)")
    s.add_argument("--round", type=positive_int, required=True, metavar="N", help="round number")
    s.add_argument(
        "--arm", default=PRODUCTION_ARM, help=f"experiment arm of the round (default: {PRODUCTION_ARM})"
    )
    s.add_argument("--batch-size", type=positive_int, default=250, help="records per request (max 500)")
    s.add_argument("--all", action="store_true", help="re-send items already pushed (updates their records)")

    s = add_command(
        sub,
        "pull",
        cmd_pull,
        help="store annotators' answers and aggregate them per item (decided, tie, undecided)",
    )
    s.add_argument("--round", type=positive_int, metavar="N", help="only this round (default: every round)")
    s.add_argument(
        "--arm", default=PRODUCTION_ARM, help=f"experiment arm of the round (default: {PRODUCTION_ARM})"
    )
    s.add_argument("--json", action="store_true")


def _client(cfg):
    """The owner's SDK client: configured URL/key, else the local stack's (loop.argilla_client)."""
    from loop.argilla_client import connect_client

    return connect_client(cfg)


def cmd_argilla(args: argparse.Namespace) -> int:
    from loop.argilla_client import stack_root

    cfg = config_from(args)
    root = stack_root(cfg)
    if args.argilla_command == "up":
        return _argilla_up(cfg, root, args.port)
    if args.argilla_command == "down":
        return _argilla_down(cfg, root, force=args.force, purge=args.purge)
    return _argilla_status(root, as_json=args.json)


def _argilla_up(cfg, root, port: int | None) -> int:
    """Start (or recover) the local stack unless it runs already; print how annotators sign in."""
    from annotation.stack.local_stack import stack_status

    before = stack_status(root)
    if before.state == "running":  # one stack per data_dir: say where it is instead of a second one
        print(
            f"Argilla is already up at {before.url} (the local stack under {root}); nothing started. "
            "`pvar-loop argilla status` shows its processes, `pvar-loop status` the loop"
        )
        print_annotator_links(cfg)
        return 0
    if port is None and before.state in ("stopped", "crashed"):
        # Restarted in place on the port it ran on (the URL annotators have), whatever [argilla] url says:
        # start_stack reuses the recorded ports while they are free.
        from annotation.stack.local_stack import start_stack

        info = start_stack(root, workspace=cfg.argilla.workspace)
    else:
        info = _start_on_configured_port(cfg, root, port)
    how = {"crashed": "recovered from a crash", "stopped": "restarted"}.get(before.state)
    print(
        f"Argilla is up at {info.url} ({how} with its data, search index rebuilt, in "
        f"{info.started_in_s:.0f} s)"
        if how
        else f"Argilla is up at {info.url} (started in {info.started_in_s:.0f} s)"
    )
    print(
        f"Annotators sign in at {info.url}/sign-in with the username and password printed by "
        f"`pvar-loop annotators add NAME`,\nthen open dataset {cfg.argilla.dataset!r} in workspace "
        f"{info.workspace!r} (it appears after the first `pvar-loop push`) through the link below."
    )
    if not print_annotator_links(cfg):
        print(
            "The link that sorts their queue by priority is printed by the round's push (and `pvar-loop status`)."
        )
    print(
        f"Owner account {info.username!r}: password and API key in {root / 'stack.json'} "
        "(readable by you only). Stop with `pvar-loop argilla down` (the data stays)."
    )
    return 0


def _argilla_down(cfg, root, *, force: bool, purge: bool) -> int:
    """Stop the stack (refused while answers are unpulled, unless forced); the data stays unless purged."""
    from annotation.stack.local_stack import stop_stack

    if not force:
        _refuse_unpulled(cfg, root, purge=purge)
    stopped = stop_stack(root, purge=purge)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"no local Argilla stack running under {root}")
    if purge:
        print(f"deleted the stack's data under {root} (logs kept)")
    elif (root / "home" / "argilla.db").exists():
        print("its data stays: `pvar-loop argilla up` starts it again; `--purge` deletes it")
    return 0


def _argilla_status(root, *, as_json: bool) -> int:
    """The stack's processes and whether the API answers; exit code 1 for a crashed stack."""
    from annotation.stack.local_stack import stack_status

    status = stack_status(root)
    if as_json:
        print_json(
            {
                "url": status.url,
                "state": status.state,
                "api_ok": status.api_ok,
                "running": status.running,
                "processes": {
                    n: {"pid": p.pid, "alive": p.alive, "rss_mib": round(p.rss_bytes / 2**20, 1)}
                    for n, p in status.processes.items()
                },
            }
        )
    elif status.state == "absent":
        print(f"no local Argilla stack under {root}")
    elif status.state == "stopped":
        print(f"{status.url}: stopped, data kept; `pvar-loop argilla up` starts it again")
    else:
        _print_stack_processes(status)
    return 1 if status.state == "crashed" else 0


def _print_stack_processes(status) -> None:
    if status.running:
        print(f"{status.url}: running (API ok)")
    else:
        dead = ", ".join(status.dead) or "none"
        print(
            f"{status.url}: crashed or stale (not running: {dead}; API ok: {status.api_ok}); "
            "`pvar-loop argilla up` recovers it in place, keeping every answer"
        )
    for p in status.processes.values():
        state = f"{p.rss_bytes / 2**20:.0f} MiB" if p.alive else "dead"
        print(f"  {p.name:<7} pid {p.pid:<8} {state}")


def _start_on_configured_port(cfg, root, port: int | None):
    """start_stack on --port, else on the port of [argilla] url (the URL the rest of the config and the
    annotators' bookmarks use), else on a free one; a taken port is refused, naming where it came from."""
    from urllib.parse import urlsplit

    from annotation.stack.local_stack import start_stack
    from annotation.stack.services import PortTakenError

    source = "--port"
    if port is None:
        try:
            port = urlsplit(cfg.argilla.url).port
        except ValueError as e:
            raise UserError(f"[argilla] url {cfg.argilla.url!r}: {e}") from e
        source = f"[argilla] url ({cfg.argilla.url}; env PVAR_LOOP_ARGILLA_URL)"
    try:
        return start_stack(root, port=port, workspace=cfg.argilla.workspace)
    except PortTakenError as e:
        raise UserError(
            f"port {e.port} from {source} is taken by another process (another Argilla?): stop it, or set "
            "[argilla] url to a free port (or pass --port); `pvar-loop argilla status` shows this "
            "project's stack"
        ) from e


def _refuse_unpulled(cfg, root, *, purge: bool) -> None:
    """`argilla down` keeps the data, but answers still only in Argilla are at risk (a purge deletes them):
    refuse, naming how many, until `pull` stored them."""
    from annotation.api import connect
    from annotation.dataset import open_dataset
    from annotation.stack.local_stack import load_stack, stack_status
    from annotation.unpulled import unpulled_answers
    from storage.db import UnitOfWork

    status = stack_status(root)
    if status.url is None:
        return
    if not status.api_ok:
        if purge and (root / "home" / "argilla.db").exists():
            raise UserError(
                f"the local Argilla stack under {root} is not running, so its unpulled answers cannot be "
                "counted: `pvar-loop argilla up` and `pvar-loop pull` first, or `--purge --force` deletes them"
            )
        return  # nothing to count and nothing deleted: the data stays
    info = load_stack(root)
    dataset = open_dataset(connect(info.url, info.api_key), cfg.argilla.dataset, cfg.argilla.workspace)
    if dataset is None:
        return
    count = unpulled_answers(UnitOfWork(open_engine(cfg)), dataset)
    if count:
        then = "delete them with the stack's data" if purge else "stop anyway (the data stays)"
        raise UserError(
            f"{count} submitted answers in Argilla dataset {dataset.workspace}/{dataset.name} are not pulled "
            f"into the database yet: run `pvar-loop pull` first, or add --force to {then}"
        )


def _round_id(uow, number: int, arm: str) -> int:
    from storage.repositories.items import round_id_for

    with uow() as session:
        rid = round_id_for(session, number, arm)
    if rid is None:
        raise UserError(f"no round {arm}/{number} in the database (see `pvar-loop status`)")
    return rid


def cmd_push(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from annotation.dataset import ensure_dataset
    from annotation.gateway import push_items
    from loop.rounds.steps import push_order
    from storage.db import UnitOfWork
    from storage.repositories.items import record_min_submitted

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    rid = _round_id(uow, args.round, args.arm)
    if args.batch_size > 500:
        raise UserError(f"--batch-size {args.batch_size}: Argilla accepts at most 500 records per request")
    status = _refuse_unplanned_push(uow, rid, args.round, args.arm)
    with uow() as session:  # the round's overlap (recorded at its first step); the dataset follows it
        overlap = record_min_submitted(session, rid, cfg.argilla.min_submitted)
    client = _client(cfg)
    a = cfg.argilla
    dataset = ensure_dataset(client, a.dataset, a.workspace, overlap, markdown=a.markdown)
    order = push_order(cfg, uow, rid)
    with tqdm(desc="push", unit="record", disable=None) as bar:

        def progress(r) -> None:
            bar.total = r.items
            bar.update(r.pushed - bar.n)

        report = push_items(
            uow,
            dataset,
            rid,
            batch_size=args.batch_size,
            include_pushed=args.all,
            order=order,
            on_batch=progress,
            gold_per_round=a.gold_per_round,
        )
    if report.items == 0:
        print(f"round {args.arm}/{args.round}: nothing to push (every item is in Argilla; --all re-sends)")
    else:
        print(
            f"pushed {report.pushed} items of round {args.arm}/{args.round} to {dataset.workspace}/"
            f"{dataset.name} in {report.batches} batches ({report.per_second:.0f} records/s)"
        )
    if report.gold:
        print(f"sent {report.gold} gold records with them ([argilla] gold_per_round; `pvar-loop gold list`)")
    if report.withdrawn:
        print(f"withdrew {report.withdrawn} waiting records of cancelled rounds from Argilla first")
    if report.recreated:
        print(f"re-created {report.recreated} records that were no longer in Argilla (same item ids)")
    from annotation.links import link_lines
    from loop.rounds.steps import record_links

    print("\n".join(link_lines(*record_links(uow, dataset, rid))))
    if status in (RoundStatus.SCORED, RoundStatus.PUSHED):
        _open_collection(cfg, uow, rid, args.round)
    return 0


def _refuse_unplanned_push(uow, round_id: int, number: int, arm: str) -> RoundStatus:
    """A round whose items are not selected yet has nothing to push: name the command that selects them."""
    from loop.rounds.state import NEXT_WORK, advance_command
    from storage.models import Round

    with uow() as session:
        status = session.get(Round, round_id).status
    if status.frees_prompts:
        raise UserError(
            f"round {arm}/{number} is {status}: its waiting records were taken out of Argilla and its prompts "
            "freed for later rounds; nothing to push"
        )
    if status == RoundStatus.PLANNED:
        raise UserError(
            f"round {arm}/{number} is planned: it has no items until the pool is scored and its top slice "
            f"selected; run `{advance_command(number, arm)}` ({NEXT_WORK[status]})"
        )
    return status


def _open_collection(cfg, uow, round_id: int, number: int) -> None:
    """After a by-hand push, move the round on as the scheduler would (scored -> pushed -> collecting; the
    step's own push finds nothing left to send)."""
    from loop.cli.common import holding_lease
    from loop.rounds.state import Services, drive

    with holding_lease(cfg, uow):
        status = drive(
            uow, cfg, round_id, Services.default(), through=(RoundStatus.SCORED, RoundStatus.PUSHED)
        )
    print(f"round {number} is now {status}; next: `pvar-loop round status` shows what it waits for")


def cmd_pull(args: argparse.Namespace) -> int:
    from loop.rounds.steps import pull_answers
    from storage.db import UnitOfWork

    cfg = config_from(args)
    uow = UnitOfWork(open_engine(cfg))
    rid = _round_id(uow, args.round, args.arm) if args.round else None
    pulled = pull_answers(cfg, uow, rid, args.round)
    if pulled is None:
        raise UserError(
            f"Argilla dataset {cfg.argilla.workspace}/{cfg.argilla.dataset} does not exist yet: "
            "push a round first"
        )
    if args.json:
        print_json(_pull_summary(pulled))
    else:
        _print_pull(pulled, args.round)
    return 0


def _pull_summary(pulled) -> dict:
    """`pull --json`: every count of the pull, and the late answers in its scope."""
    from loop.cli.status_view import late_answer_json

    report, withdrawn, progress = pulled.report, pulled.withdrawn, pulled.progress
    return {
        "records": report.records,
        "responses": report.responses,
        "drafts": report.drafts,
        "drafts_by_annotator": report.drafts_by,
        "round_progress": None
        if progress is None
        else {"total": progress.total, "completed": progress.completed, "pending": progress.pending},
        "new_labels": report.new_labels,
        "updated_labels": report.updated_labels,
        "unchanged_labels": report.unchanged_labels,
        "items_changed": report.items_changed,
        "decided": report.decided - report.ties,  # a/b only, as status says; ties apart
        "undecided": report.undecided,
        "ties": report.ties,
        "waiting": report.waiting,
        "closed_items": report.closed_items,
        "late_labels": report.late_labels,
        "late_answers": [late_answer_json(a) for a in report.late],
        "cancelled_labels": report.cancelled_labels + withdrawn.labels,
        "withdrawn": withdrawn.withdrawn,
        "gold_answers": report.gold_answers,  # answers to gold records stored (in none of the counts above)
        "pairwise_agreement": report.agreement.pairwise if report.agreement else None,
        "fleiss_kappa": report.agreement.fleiss_kappa if report.agreement else None,
        "skipped": [
            {"record": s.record, "annotator": s.annotator, "reason": s.reason} for s in report.skipped
        ],
    }


def _print_pull(pulled, round_number: int | None) -> None:
    report, withdrawn, progress = pulled.report, pulled.withdrawn, pulled.progress
    print(
        f"read {report.responses} responses on {report.records} records: {report.new_labels} new answers, "
        f"{report.updated_labels} updated, {report.drafts} drafts"
    )
    print(  # the units of `status` (loop.cli.rounds.UNITS): decided = an a/b majority, a tie apart
        f"items: {report.decided - report.ties} decided, {report.ties} ties, {report.undecided} undecided, "
        f"{report.waiting} waiting for answers ({report.items_changed} changed by this pull)"
    )
    if progress is not None:
        print(
            f"round {round_number} in Argilla: {progress.completed} of {progress.total} records completed "
            f"({progress.percent:.0f}%), {progress.pending} left"
        )
    if report.gold_answers:
        print(f"gold: {report.gold_answers} answers to gold items stored (`pvar-loop gold list`)")
    if report.drafts:
        who = ", ".join(f"{name}: {n}" for name, n in sorted(report.drafts_by.items()))
        print(
            f"{report.drafts} draft{'s' if report.drafts != 1 else ''} not submitted ({who}): a draft is no "
            "answer and is not stored; it also left its annotator's Pending queue, so ask them to submit it "
            "(Argilla's Draft filter lists them)"
        )
    if report.closed_items:
        print(
            f"{report.closed_items} items of rounds past collection keep the decisions they were trained on"
            f"{f'; {report.late_labels} late answers on them stored, not counted' if report.late_labels else ''}"
        )
    if withdrawn.withdrawn:
        print(
            f"withdrew {withdrawn.withdrawn} waiting records of cancelled rounds from Argilla "
            f"({withdrawn.labels} answers on them stored first)"
        )
    if report.cancelled_labels + withdrawn.labels:
        print(
            f"{report.cancelled_labels + withdrawn.labels} answers on items of cancelled rounds stored, marked "
            "by their round: not trained on or exported (`export --include-cancelled` includes them)"
        )
    for s in report.skipped[:20]:
        print(f"skipped {s.record[:16]}{f' ({s.annotator})' if s.annotator else ''}: {s.reason}")
    if len(report.skipped) > 20:
        print(f"... and {len(report.skipped) - 20} more skipped (--json lists all)")
