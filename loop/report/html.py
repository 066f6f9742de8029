"""The report page: plain HTML + inline CSS, no scripts; every text from the database is escaped."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from loop.report.quality_html import annotators_section
from loop.report.verdict import baseline_spread

if TYPE_CHECKING:
    from loop.report.contents import EvalPoint, ReportData, RoundRow

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0;
       background: #f6f6f4; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #e2e2e2; padding-bottom: 4px; }
.meta { color: #666; margin: 0 0 16px; }
.verdict { border-left: 6px solid #999; background: #f2f2f2; padding: 12px 16px; margin: 16px 0; }
.verdict h2 { border: 0; margin: 0 0 6px; padding: 0; }
.verdict p { margin: 0; font-size: 16px; }
.verdict.ahead { border-color: #2e7d32; background: #edf7ee; }
.verdict.behind { border-color: #c62828; background: #fdeeee; }
.verdict.overlap { border-color: #ef8f00; background: #fff6e5; }
figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e5e5; }
figcaption, .note { color: #555; font-size: 13px; }
.empty { color: #666; font-style: italic; background: #fafafa; border: 1px dashed #ccc; padding: 10px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 4px 4px; text-align: left; vertical-align: top; }
th { background: #fafafa; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.id { font-family: ui-monospace, Menlo, monospace; font-size: 11px; white-space: nowrap; }
tr.arm-start td { border-top: 2px solid #bbb; }
td.nw { white-space: nowrap; }
.scroll { overflow-x: auto; }
.ahead { color: #2e7d32; } .behind { color: #c62828; } .overlap { color: #b26a00; }
"""

CAPTIONS = {
    "eval": "Win rate of each arm's policy against the reference after each round, with its confidence "
    "interval, against the answers that arm had collected by then. Above the dotted line = better than the "
    "reference.",
    "pvar": "Each violin is the pool a round selected from: the PVar of every scored prompt under the "
    "round's input policy. Dots are the prompts that round sent for labelling; a PVar arm's dots sit at the "
    "top, a random arm's spread over the violin.",
    "agreement": "Agreement between annotators on each round's items, and the share of items that ended as a "
    "tie or without a majority (no DPO pair).",
    "budget": "Prompts the round could send (budget), items actually pushed to annotators (hatched: withdrawn "
    "when the round was cancelled), and items decided.",
}
TITLES = {
    "eval": "Eval metric vs cumulative answers",
    "pvar": "PVar of the pool per round",
    "agreement": "Label agreement",
    "budget": "Budget use per round",
}


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _eval(e: EvalPoint | None) -> str:
    # Non-breaking spaces keep a number with its interval; the cell wraps before "n=", "mean score" and the
    # score's interval, so the column stays narrow enough for the table to fit a 1280 px window.
    if e is None:
        return "–"
    text = f"{e.win_rate:.3f}\u00a0[{e.ci_low:.3f},\u00a0{e.ci_high:.3f}] n={e.n_prompts}"
    if e.score_mean is not None and e.score_low is not None and e.score_high is not None:
        text += f"; mean score\u00a0{e.score_mean:.3f} [{e.score_low:.3f},\u00a0{e.score_high:.3f}]"
    return text


def _td(text: object, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(str(text))}</td>"


def _id_td(value: str | None, keep: int = 15) -> str:
    """A checkpoint id, shortened in the middle when long; the full id is the cell's tooltip."""
    if not value:
        return _td("–", "id")
    short = value if len(value) <= keep else f"{value[: keep - 7]}…{value[-6:]}"
    return f'<td class="id" title="{escape(value)}">{escape(short)}</td>'


# (header, numeric?) of the rounds table, in cell order.
ROUND_COLUMNS = (
    ("arm", False),
    ("round", True),
    ("status", False),
    ("strategy", False),
    ("budget", True),
    ("items", True),
    ("decided", True),
    ("ties", True),
    ("no majority", True),
    ("answers", True),
    ("agreement / κ", True),
    ("selected PVar pct", True),
    ("candidates", True),
    ("scoring cost", False),
    ("policy in", False),
    ("policy out", False),
    ("eval win rate; mean score", False),
)
COMPARISON_COLUMNS = (
    ("round", True),
    ("PVar answers", True),
    ("PVar win rate [CI]", False),
    ("random runs", True),
    ("random answers", True),
    ("random win rate", False),
    ("outcome", False),
)


def _header(columns: tuple[tuple[str, bool], ...]) -> str:
    cells = "".join(
        f"<th class='num'>{escape(c)}</th>" if num else f"<th>{escape(c)}</th>" for c, num in columns
    )
    return f"<tr>{cells}</tr>"


def _rounds_table(rounds: list[RoundRow]) -> str:
    head = _header(ROUND_COLUMNS)
    rows, previous = [], None
    for r in rounds:
        status = r.status + (f" ({r.reason})" if r.reason else "")
        pct = r.pvar.selected_percentile if r.pvar else None
        cls = ' class="arm-start"' if previous is not None and r.arm != previous else ""
        previous = r.arm
        rows.append(
            f"<tr{cls}>"
            + _td(r.arm, "nw")
            + _td(r.number, "num")
            + _td(status)
            + _td(r.strategy, "nw")
            + _td(r.budget, "num")
            + _td(r.items, "num")
            + _td(r.decided, "num")
            + _td(r.ties, "num")
            + _td(r.undecided, "num")
            + _td(r.labels, "num")
            + _td(f"{_num(r.pairwise_agreement, 2)} / {_num(r.fleiss_kappa, 2)}", "num")
            + _td(_num(pct, 0), "num")
            + _td(candidates_text(r.scoring), "num")
            + _td(scoring_cost_text(r.scoring))
            + _id_td(r.policy_in)
            + _id_td(r.policy_out)
            + _td(_eval(r.eval))
            + "</tr>"
        )
    return f"<div class='scroll'><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>"


def candidates_text(scoring: dict | None) -> str:
    """ "8 of 40" drawn candidates of the free pool, "pool (40)" for a whole-pool round, "-" before scoring."""
    if not scoring:
        return "-"
    if scoring["candidates"] is None:
        return "pool" + (f" ({scoring['free_pool']})" if scoring["free_pool"] is not None else "")
    return f"{scoring['drawn']} of {scoring['free_pool']}"


def scoring_cost_text(scoring: dict | None) -> str:
    if not scoring:
        return "-"
    return (
        f"{scoring['prompts_scored']} scored, {scoring['samples_generated']} samples, "
        f"{scoring['scoring_s']:.1f} s"
    )


REFRESH_COLUMNS = (
    ("after round", True),
    ("decided items", True),
    ("held out", True),
    ("agreement old", True),
    ("agreement new", True),
    ("outcome", False),
    ("selects next", False),
)


def _refresh_section(refreshes: list[dict]) -> str:
    """One row per round's reward-model refresh: old vs new agreement with the humans on held-out labels."""
    if not refreshes:
        return ""
    rows = []
    for r in refreshes:
        outcome = "kept" if r["kept"] else ("not trained" if r["candidate_model"] is None else "rejected")
        rows.append(
            "<tr>"
            + _td(r["round"], "num")
            + _td(r["n_pairs"], "num")
            + _td(r["n_heldout"], "num")
            + _td(_num(r["old_agreement"]), "num")
            + _td(_num(r["new_agreement"]), "num")
            + _td(outcome)
            + _id_td(r["candidate_model"] if r["kept"] else r["previous_model"], keep=40)
            + "</tr>"
        )
    return (
        '<section class="refresh"><h2>Selection reward model refreshes</h2>'
        f"<div class='scroll'><table><thead>{_header(REFRESH_COLUMNS)}</thead><tbody>{''.join(rows)}"
        "</tbody></table></div>"
        '<p class="note">[reward] refresh: after each round a candidate is trained on the decided labels so '
        "far; agreement = share of held-out labels (never trained on) whose human choice the model scores "
        "higher; the candidate is kept when its agreement does not drop.</p></section>"
    )


def _comparison_table(verdict: dict) -> str:
    rows = verdict.get("by_round") or []
    if not rows:
        return ""
    body = []
    for r in rows:
        m, b = r["method"], r["baseline"]
        spread = baseline_spread(b)
        body.append(
            "<tr>"
            + _td(r["round"], "num")
            + _td(m["labels"], "num")
            + _td(f"{m['win_rate']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]")
            + _td(b["runs"], "num")
            + _td(f"{b['labels_mean']:.0f}", "num")
            + _td(f"{b['win_rate_mean']:.3f}{spread}")
            + _td(r["outcome"], r["outcome"])
            + "</tr>"
        )
    head = _header(COMPARISON_COLUMNS)
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _figure(name: str, plots: dict[str, str], empty: dict[str, str]) -> str:
    out = [f"<section><h2>{escape(TITLES[name])}</h2>"]
    if name in plots:
        src = escape(plots[name])
        out.append(
            f'<figure><img src="{src}" alt="{escape(TITLES[name])}">'
            f"<figcaption>{escape(CAPTIONS[name])}</figcaption></figure>"
        )
    else:
        out.append(f'<p class="empty">{escape(empty[name])}</p>')
    return "".join(out) + "</section>"


def render(data: ReportData, plots: dict[str, str], empty: dict[str, str]) -> str:
    """The page. `plots`: name -> PNG file name next to the page; `empty`: name -> why a plot is missing."""
    pool = data.pool
    by_split = ", ".join(f"{k} {v}" for k, v in sorted(pool["prompts"].items())) or "empty"
    meta = (
        f"Generated {data.generated_at} · {len(data.rounds)} round(s) in {len(data.arms)} arm(s) · "
        f"{data.total_labels} answers · prompts: {by_split} (train scored {pool['train_scored']})"
    )
    verdict = data.verdict
    status = verdict.get("status", "")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>pvar-loop report</title><style>{CSS}</style></head><body><main>",
        "<h1>pvar-loop report</h1>",
        f'<p class="meta">{escape(meta)}</p>',
        f'<section class="verdict {escape(status)}"><h2>Did PVar beat random?</h2>',
        f"<p>{escape(verdict.get('headline', ''))}</p></section>",
        _comparison_table(verdict),
    ]
    if data.audit:
        parts.append(
            '<section class="audit"><h2>Live audit: PVar picks vs random audit picks</h2>'
            f"<p>{escape(data.audit['sentence'])}</p>"
            + (f"<p>{escape(data.audit['margin_sentence'])}</p>" if data.audit.get("margin_sentence") else "")
            + '<p class="note">Each pvar round labels a share of its budget ([selection] audit_fraction) '
            "drawn at random from the prompts PVar did not pick; decided = a or b (not tie, not undecided); "
            "95% interval of the difference by Newcombe's method. Per round, annotator and reward-model agreement: "
            "report.json, key audit.</p></section>"
        )
    if data.judge_warning:
        parts.append(f'<p class="note judge-warning">{escape(data.judge_warning)}</p>')
    parts.append(_refresh_section(data.reward_refresh))
    if data.other_eval_pairs:
        others = "; ".join(f"{ref} / {judge}" for ref, judge in data.other_eval_pairs)
        parts.append(
            f'<p class="note">Curves use reference {escape(str(data.eval_reference))} and judge '
            f"{escape(str(data.eval_judge))}; other evaluations (in report.json): {escape(others)}</p>"
        )
    parts.extend(_figure(name, plots, empty) for name in ("eval", "pvar", "agreement", "budget"))
    parts.append(annotators_section(data, plots, empty))
    parts.append("<section class='rounds'><h2>Rounds</h2>")
    if data.rounds:
        parts.append(_rounds_table(data.rounds))
        parts.append(
            '<p class="note">items = prompts sent for labelling; answers = one annotator\'s answer each (discards '
            "included); decided = items with an a/b majority (the DPO pairs); ties = items with a tie majority; "
            "no majority = undecided items; agreement = pairwise agreement / Fleiss' κ over "
            "items with 2+ votes; selected PVar pct = mean percentile of the round's prompts in its pool "
            "(50 ≈ random); candidates = prompts drawn for the round of those free ([selection] candidates; "
            "pool: all of them); scoring cost = prompts the round's scoring step scored (candidates already "
            "scored under its policy are reused), responses it sampled and seconds.</p>"
        )
    else:
        parts.append('<p class="empty">No rounds yet.</p>')
    parts.append(
        '</section><p class="note">The numbers behind every plot and table: '
        '<a href="report.json">report.json</a>.</p></main></body></html>'
    )
    return "\n".join(parts)
