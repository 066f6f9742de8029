"""`pvar-loop annotators add|list|remove|reset-password`: annotator accounts in the project's Argilla workspace,
and how many answers of each are pulled into our database. Registered by loop.cli.app.

Which Argilla: as every Argilla command (loop.argilla_client). Passwords and keys are never logged or stored by
us: `add` and `reset-password` print them once, on stdout.
"""

from __future__ import annotations

import argparse
import os

from loop.cli import exclusions
from loop.cli.common import (
    UserError,
    add_command,
    config_from,
    open_engine,
    positive_int,
    print_annotator_links,
    print_json,
)

# The bot's own annotator key: from the environment, not the command line (other users see command lines).
BOT_KEY_ENV = "PVAR_LOOP_BOT_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    s = add_command(sub, "annotators", cmd_annotators, help="annotator accounts in the Argilla workspace")
    an = s.add_subparsers(dest="annotators_command", required=True)
    add = an.add_parser("add", help="create an annotator and print its credentials (once)")
    add.add_argument("name", help="username: letters, digits, - and _")
    add.add_argument("--first-name", help="display name (default: the username)")
    an.add_parser(
        "list",
        help="the workspace's users, how many answers of each are pulled into the database, and each one's "
        "reliability (gold accuracy, agreement, position bias, pace; flagged against [quality])",
    ).add_argument("--json", action="store_true")
    rm = an.add_parser(
        "remove",
        help="delete an annotator's account (or, if other workspaces share it, take it out of ours); "
        "answers already pulled stay in the database",
    )
    rm.add_argument("name", help="username")
    rm.add_argument(
        "--force",
        action="store_true",
        help="remove even though some of their answers are not pulled yet (Argilla deletes them)",
    )
    reset = an.add_parser("reset-password", help="give an annotator a new password and print it (once)")
    reset.add_argument("name", help="username")
    exclusions.register(an)
    bot = an.add_parser(
        "bot",
        help=f"label an annotator's pending records with a rule, as that annotator (key in ${BOT_KEY_ENV}): "
        "a dry run of a round, or a stand-in annotator",
    )
    bot.add_argument(
        "--judge",
        choices=("random", "verifier"),
        default="random",
        help="random: a seeded coin per pair; verifier: the response that meets more of the prompt's "
        "metadata.constraints (ties when equal)",
    )
    bot.add_argument("--dataset", help="Argilla dataset (default: [argilla] dataset)")
    bot.add_argument("--limit", type=positive_int, help="answer at most this many records")
    bot.add_argument("--seed", type=int, default=0, help="seed of the judge's draws (default 0)")


def cmd_annotators(args: argparse.Namespace) -> int:
    from annotation.api import AnnotationSyncError
    from loop.argilla_client import connect_client

    cfg = config_from(args)
    if args.annotators_command in ("exclude", "include"):  # our database first: Argilla may be down
        return exclusions.cmd_exclusion(args, cfg)
    client = connect_client(cfg)
    handlers = {
        "add": _annotators_add,
        "list": _annotators_list,
        "remove": _annotators_remove,
        "reset-password": _annotators_reset_password,
        "bot": _annotators_bot,
    }
    try:
        return handlers[args.annotators_command](args, cfg, client)
    except (AnnotationSyncError, ValueError) as e:
        raise UserError(str(e)) from e


def _annotators_add(args, cfg, client) -> int:
    from annotation.annotators import create_annotator

    cred = create_annotator(client.http_client, args.name, cfg.argilla.workspace, first_name=args.first_name)
    url = str(client.api_url).rstrip("/")
    # Printed once, to stdout only: Argilla keeps no readable copy of the password.
    print(f"created annotator {cred.username!r} in workspace {cred.workspace!r}")
    print(f"  sign in at: {url}/sign-in")
    print(f"  username:   {cred.username}")
    print(f"  password:   {cred.password}")
    print(f"  API key:    {cred.api_key}   (for scripts and `{BOT_KEY_ENV}=KEY pvar-loop annotators bot`)")
    print("Store these now; they are not shown again.")
    _own_dataset(cfg, client, cred)
    print_annotator_links(cfg, client)
    return 0


def _own_dataset(cfg, client, cred) -> None:
    """With min_submitted >= 2 (blind overlap) the new annotator gets a workspace and dataset of their own
    now; the scheduler's next collecting tick (or `pvar-loop push`) places the items coverage lacks."""
    from annotation.annotators import Member
    from annotation.blind import annotator_dataset, blind
    from annotation.dataset import open_dataset

    project = open_dataset(client, cfg.argilla.dataset, cfg.argilla.workspace)
    if project is None or not blind(project):
        return
    own = annotator_dataset(project, Member(cred.username, "annotator", cred.user_id))
    print(f"  own queue:  {own.annotation_url}   (blind overlap: only their records, in priority order)")


def _annotators_list(args, cfg, client) -> int:
    """Argilla's members of the workspace, with the answers of each pulled into OUR database (also those
    of annotators removed since) and their reliability, cumulative and per round (loop.quality)."""
    from annotation.annotators import workspace_members
    from loop.cli.quality_view import LEGEND, alpha_lines, table
    from loop.quality.inputs import annotator_reliability
    from storage.db import UnitOfWork
    from storage.repositories.exclusions import exclusions
    from storage.repositories.queries import answers_per_annotator

    members = workspace_members(client.http_client, cfg.argilla.workspace)
    with UnitOfWork(open_engine(cfg))() as session:
        pulled = {a["username"]: a for a in answers_per_annotator(session)}
        quality = annotator_reliability(session, cfg.quality)
        excluded = {e.annotator: e for e in exclusions(session)}
    none = {"submitted": 0, "discarded": 0}
    rows = [
        {
            "username": m.username,
            "role": m.role,
            "in_workspace": True,
            **_counts(pulled.get(m.username, none)),
        }
        for m in members
    ]
    known = {m.username for m in members}
    rows += [
        {"username": who, "role": None, "in_workspace": False, **_counts(a)}
        for who, a in pulled.items()
        if who not in known
    ]
    for r in rows:
        e = excluded.get(r["username"])
        r["excluded"] = e and {"since": e.since.isoformat(timespec="seconds"), "by": e.by, "reason": e.reason}
        r["reliability"] = quality["annotators"].get(r["username"])
        r["rounds"] = [
            {"round": q["round"], "alpha": q["alpha"], **q["annotators"][r["username"]]}
            for q in quality["rounds"]
            if r["username"] in q["annotators"]
        ]
    if args.json:
        print_json(rows)
        return 0
    print(f"users of Argilla workspace {cfg.argilla.workspace!r} (answers pulled into the database):")
    print("\n".join(table(rows) + alpha_lines(quality["rounds"])))
    print(f"({LEGEND}; per round: --json)")
    return 0


def _counts(answers: dict) -> dict:
    return {"submitted": answers["submitted"], "discarded": answers["discarded"]}


def _annotators_remove(args, cfg, client) -> int:
    from annotation.annotators import find_annotator, remove_annotator
    from annotation.dataset import open_dataset
    from annotation.unpulled import AnswerCount, count_answers
    from storage.db import UnitOfWork

    http = client.http_client
    member = find_annotator(http, args.name, cfg.argilla.workspace)
    dataset = open_dataset(client, cfg.argilla.dataset, cfg.argilla.workspace)
    uow = UnitOfWork(open_engine(cfg))
    answers = count_answers(uow, dataset, member.username) if dataset is not None else AnswerCount(0, 0)
    if answers.unpulled and not args.force:
        raise UserError(
            f"annotator {member.username!r} has {answers.unpulled} answers in Argilla dataset "
            f"{cfg.argilla.workspace}/{cfg.argilla.dataset} not pulled into the database yet: run "
            "`pvar-loop pull` first, or add --force to remove them (Argilla deletes them with the account)"
        )
    deleted = remove_annotator(http, member, cfg.argilla.workspace)
    kept = answers.in_argilla - answers.unpulled
    if deleted:
        print(
            f"deleted annotator {member.username!r}: the account and its API key no longer work; Argilla "
            f"deleted its {answers.in_argilla} responses in the dataset with it"
        )
    else:
        print(
            f"removed annotator {member.username!r} from workspace {cfg.argilla.workspace!r} (the account is "
            f"kept: other workspaces use it); its {answers.in_argilla} responses stay in Argilla"
        )
    print(
        f"{kept} of their answers were pulled and stay in the database (labels, decisions, export)"
        + (f"; {answers.unpulled} not pulled are lost (--force)" if answers.unpulled and deleted else "")
    )
    return 0


def _annotators_reset_password(args, cfg, client) -> int:
    from annotation.annotators import find_annotator, reset_password

    member = find_annotator(client.http_client, args.name, cfg.argilla.workspace)
    password = reset_password(client.http_client, member)
    url = str(client.api_url).rstrip("/")
    # Printed once, to stdout only: neither Argilla (a hash) nor our database keeps it.
    print(f"new password for annotator {member.username!r} (the old one no longer works):")
    print(f"  sign in at: {url}/sign-in")
    print(f"  username:   {member.username}")
    print(f"  password:   {password}")
    print("Store it now; it is not shown again. Their API key is unchanged.")
    return 0


def _annotators_bot(args, cfg, client) -> int:
    """Answer the bot annotator's pending records (its queue, priority first) in the dataset, through the
    annotator API only: exactly what that person could do in the UI."""
    from annotation.dataset import open_dataset
    from annotation.simulated.bot import AnnotatorBot, BotReport

    key = os.environ.get(BOT_KEY_ENV)
    if not key:
        raise UserError(
            f"annotators bot: set {BOT_KEY_ENV} to the API key of the annotator it answers as "
            "(`pvar-loop annotators add NAME` prints it)"
        )
    name = args.dataset or cfg.argilla.dataset
    dataset = open_dataset(client, name, cfg.argilla.workspace)
    if dataset is None:
        raise UserError(
            f"no dataset {name!r} in workspace {cfg.argilla.workspace!r} yet (it appears with the first push)"
        )
    url = str(client.api_url).rstrip("/")
    with AnnotatorBot(url, key, _bot_judge(args.judge, args.seed, cfg)) as bot:
        # The shared dataset and, with blind overlap (min_submitted >= 2), the annotator's own of that name.
        report = BotReport(bot.username)
        for dataset_id in bot.dataset_ids(name):
            left = None if args.limit is None else args.limit - report.submitted
            if left is not None and left <= 0:
                break
            part = bot.run(dataset_id, limit=left)
            report.answers.update(part.answers)
            report.errors += part.errors
    answers = ", ".join(f"{k} {v}" for k, v in sorted(report.answers.items())) or "nothing pending"
    print(f"{report.username} answered {report.submitted} records in {name!r} ({answers})")
    for error in report.errors:
        print(f"warning: {error}")
    return 0


def _bot_judge(kind: str, seed: int, cfg):
    from annotation.simulated.judges import RewardJudge

    if kind == "random":  # equal rewards: A with probability 1/2, drawn per pair from the seed
        return RewardJudge(lambda _prompt, _response: 0.0, seed=seed)
    from loop.demo.run import verifier_judge
    from storage.db import UnitOfWork
    from storage.repositories.prompts import constraints_by_text

    with UnitOfWork(open_engine(cfg))() as session:
        constraints = constraints_by_text(session)  # every prompt's, by the text records show
    return verifier_judge(constraints, seed=seed)
