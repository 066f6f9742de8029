"""`pvar-loop status` for people: a few summary lines and a rounds table, from the same dict `--json` prints."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from loop.cli.rounds import describe_next, round_link_lines, units_lines

ROUND_COLUMNS = (
    ("round", "<"),
    ("status", "<"),
    ("strategy", "<"),
    ("budget", ">"),
    ("items", ">"),
    ("answered", ">"),
    ("decided", ">"),
    ("ties", ">"),
    ("answers", ">"),
    ("agreement", ">"),
)


def round_agreements(choices: Iterable[tuple[str, int, str, str]]) -> dict[tuple[str, int], dict]:
    """Per (arm, round number): annotator agreement over the round's items with two or more a/b/tie votes
    (discards do not vote): how many such items, the share of them where all annotators agree, pairwise
    agreement and Fleiss' kappa (None where undefined)."""
    from annotation.aggregate import agreement

    votes: dict[tuple[str, int], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for arm, number, item_id, choice in choices:
        votes[(arm, number)][item_id].append(choice)
    out = {}
    for key, items in votes.items():
        a = agreement(list(items.values()))
        out[key] = {
            "items": a.items,
            "unanimous": a.unanimous,
            "pairwise": a.pairwise,
            "fleiss_kappa": a.fleiss_kappa,
        }
    return out


def late_answer_json(late) -> dict:
    """A storage.repositories.labels.LateAnswer for `status --json` and `pull --json`."""
    lb = late.label
    return {
        "arm": late.arm,
        "round": late.round_number,
        "item": lb.item_id,
        "annotator": lb.annotator,
        "choice": str(lb.choice),  # our orientation (a = the higher-reward response)
        "version": lb.version,
        "answered_at": None if lb.submitted_at is None else lb.submitted_at.isoformat(),
    }


def late_line(late: list[dict]) -> list[str]:
    """One line on the late answers: stored and shown, never counted by the closed rounds they came to."""
    if not late:
        return []
    per: dict[tuple[str, int], int] = defaultdict(int)
    for a in late:
        per[(a["arm"], a["round"])] += 1
    where = ", ".join(
        f"round {n}{'' if arm == 'main' else f' ({arm})'}: {k}" for (arm, n), k in sorted(per.items())
    )
    return [
        f"late answers: {len(late)} given or changed after their round stopped collecting ({where}); stored, "
        "not counted (`export --include-late` lists them)"
    ]


NO_AGREEMENT = {"items": 0, "unanimous": None, "pairwise": None, "fleiss_kappa": None}


def render(status: dict) -> list[str]:
    """The human summary: database, pool, labels, annotators, scheduler, new rounds, audit, rounds table (with
    each open round's next step), evaluations, recent operator actions."""
    lines = [f"database:   {status['database']}", f"pool:       {_pool(status['pool'])}"]
    lines.append(f"answers:    {status['answers']} collected (one annotator's answer to one item each)")
    excluded = {e["annotator"] for e in status.get("excluded_annotators") or []}
    figures = (status.get("reliability") or {}).get("annotators", {})
    lines += _annotators(status["annotators"], figures, excluded)
    lines += exclusion_lines(status.get("excluded_annotators") or [])
    lines += late_line(status.get("late_answers") or [])
    lines.append(_scheduler_line(status["scheduler"]))
    lines += command_lines(status.get("operator_commands", []))
    lines.append(_new_rounds(status["new_rounds"]))
    lines.append(status["audit"]["sentence"])
    if status["audit"].get("margin_sentence"):
        lines.append(status["audit"]["margin_sentence"])
    lines += ["", *_rounds_table(status["rounds"])]
    if status["evaluations"]:
        lines += ["", "evaluations:"]
        for e in status["evaluations"]:
            lines.append(
                f"  {e['checkpoint']} vs {e['reference']}: win rate {e['win_rate']:.3f} "
                f"[{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]{score_text(e)} n={e['n']} ({e['judge']})"
            )
    if status["judge_warning"]:
        lines.append(f"warning: {status['judge_warning']}")
    if status["reward_refresh"]:
        lines += ["", *(refresh_line(r) for r in status["reward_refresh"])]
    if status.get("reward_exclusions"):
        lines += ["", "samples without a reward (left out of their prompt's PVar):"]
        for x in status["reward_exclusions"]:
            lines.append(f"  {x['samples']} of {x['checkpoint']} under {x['reward_model']}: {x['reason']}")
    if status["operator_actions"]:
        lines += ["", "recent operator actions:"]
        for a in status["operator_actions"]:
            payload = ", ".join(f"{k} {v}" for k, v in (a["payload"] or {}).items())
            lines.append(f"  {a['at']} {a['actor']}: {a['action']}" + (f" ({payload})" if payload else ""))
    return lines


def exclusion_lines(excluded: list[dict]) -> list[str]:
    """Annotators whose answers do not count now (`annotators exclude`), who and since when."""
    return [
        f"excluded:   {e['annotator']} since {e['since']} by {e['by']}"
        + (f" ({e['reason']})" if e["reason"] else "")
        + ": answers kept and exported flagged, not counted in open or later rounds"
        for e in excluded
    ]


def command_lines(commands: list[dict]) -> list[str]:
    """Round commands given while a scheduler ran: pending ones (carried out at its next tick) and the latest
    done or failed, with what came of them."""
    if not commands:
        return []
    out = ["operator commands (for the running scheduler; carried out at its next tick):"]
    for c in commands:
        what = f"#{c['id']} {c['command']} round {c['round']} by {c['actor']} at {c['requested_at']}"
        if c["state"] == "pending":
            out.append(f"  {what}: pending")
        else:
            out.append(f"  {what}: {c['state']} at {c['done_at']}: {c['outcome']}")
    return out


def _pool(pool: dict) -> str:
    by_split = pool["prompts"]
    if not by_split:
        return "empty (`pvar-loop ingest FILE`)"
    train, evals = by_split.get("train", 0), by_split.get("eval", 0)
    others = "".join(
        f", {n} {split}" for split, n in sorted(by_split.items()) if split not in ("train", "eval")
    )
    return (
        f"{train} train prompts ({pool['train_scored']} scored, {pool['train_unscored']} unscored), "
        f"{evals} eval prompts{others}"
    )


def _annotators(rows: list[dict], figures: dict[str, dict], excluded: set[str]) -> list[str]:
    """Who answered how much (pulled answers in our database; `pull` first for the latest), their reliability
    (loop.quality, cumulative) and a warning line for each one flagged against [quality]."""
    from loop.cli.quality_view import status_text, warning_lines

    if not rows:
        return ["annotators: none yet (`pvar-loop annotators add NAME`)"]
    lines = ["annotators:"]
    for r in rows:
        f = figures.get(r["username"])
        more = f"; {status_text(f)}" if f else ""
        lines.append(
            f"  annotator {r['username']}: {r['submitted']} submitted, {r['discarded']} discarded{more}"
        )
    shown = {r["username"] for r in rows}
    return lines + warning_lines({who: f for who, f in figures.items() if who in shown}, excluded)


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


def _new_rounds(new: dict) -> str:
    if new["paused"]:
        return f"new rounds: paused ({new['why']})"
    return f"new rounds: round {new['next_round']} next, {new['strategy']} budget {new['budget']} items"


def _agreement_cell(a: dict | None) -> str:
    if not a or not a["items"]:
        return "-"
    return f"{a['unanimous']:.0%} of {a['items']}"


def _rounds_table(rounds: list[dict]) -> list[str]:
    if not rounds:
        return ["rounds: none yet (`pvar-loop round start`, or `pvar-loop run` starts them)"]
    rows = [
        {
            "round": f"{r['arm']}/{r['number']}",
            "status": str(r["status"]),
            "strategy": str(r["strategy"]),
            **{k: str(r[k]) for k in ("budget", "items", "answered", "decided", "ties", "answers")},
            "agreement": _agreement_cell(r.get("agreement")),
        }
        for r in rounds
    ]
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c, _ in ROUND_COLUMNS}

    def line(cells: dict) -> str:
        return "  ".join(f"{cells[c]:{align}{widths[c]}}" for c, align in ROUND_COLUMNS).rstrip()

    out = ["rounds (agreement: share of items with 2+ votes where every annotator agrees):"]
    out += [f"  {u}" for u in units_lines(rounds)]
    out.append("  " + line({c: c for c, _ in ROUND_COLUMNS}))
    for r, row in zip(rounds, rows, strict=True):
        out.append("  " + line(row))
        if r.get("scoring"):
            out.append(f"    {scoring_line(r['scoring'])}")
        if r["reason"]:
            out.append(f"    {r['reason']}")
        if r.get("next") is not None:
            out.append(f"    {describe_next(r['next'])}")
        out += [f"    {line}" for line in round_link_lines(r)]
    return out


def scoring_line(c: dict) -> str:
    """What a round's scoring step drew and cost (storage.repositories.candidates.scoring_costs)."""
    if c["candidates"] is None:
        drawn = "whole pool" + (f" ({c['free_pool']} free prompts)" if c["free_pool"] is not None else "")
    else:
        drawn = f"{c['drawn']} candidates of {c['free_pool']} free prompts"
    return (
        f"scoring: {drawn}; {c['prompts_scored']} prompts scored, {c['samples_generated']} samples "
        f"({c['tokens_generated']} tokens) in {c['scoring_s']:.1f} s"
    )


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
