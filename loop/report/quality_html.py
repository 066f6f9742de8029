"""The report's annotators section: per-annotator reliability (loop.quality) as a table, the plot and one
warning per flagged annotator. Plain HTML; every name from the database is escaped."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loop.report.contents import ReportData

PLOT = "annotators"
CAPTION = (
    "Left: the share of each annotator's a/b answers that chose the side shown as A, with its 95% interval; "
    "the A/B order is swapped at random, so a careful annotator sits near 0.5 (green band: [quality] "
    "max_position_bias). Right: accuracy on gold items with its 95% interval (or, without gold answers, "
    "agreement with the other annotators' majority). Red: flagged."
)
# (header, numeric?)
COLUMNS = (
    ("annotator", False),
    ("answers", True),
    ("gold accuracy [95% CI]", True),
    ("agrees with majority", True),
    ("shown A [95% CI]", True),
    ("ties", True),
    ("discards", True),
    ("s / answer", True),
    ("flagged", False),
)


def _cell(text: object, num: bool = True) -> str:
    return f"<td class='num'>{escape(str(text))}</td>" if num else f"<td>{escape(str(text))}</td>"


def _ci(value: float | None, interval, n: int) -> str:
    if value is None:
        return "–"
    low, high = interval
    return f"{value:.2f}\u00a0[{low:.2f},\u00a0{high:.2f}] n={n}"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _row(name: str, f: dict) -> str:
    majority = (
        "–" if f["majority_agreement"] is None else f"{f['majority_agreement']:.2f} n={f['majority_items']}"
    )
    pace = f["seconds_per_answer"]
    return (
        "<tr>"
        + _cell(name, num=False)
        + _cell(f["answers"])
        + _cell(_ci(f["gold_accuracy"], f["gold_interval"], f["gold_answers"]))
        + _cell(majority)
        + _cell(_ci(f["position_bias"], f["position_interval"], f["ab_answers"]))
        + _cell(_rate(f["tie_rate"]))
        + _cell(_rate(f["discard_rate"]))
        + _cell("–" if pace is None else f"{pace:.1f}")
        + _cell("yes" if f["flags"] else "", num=False)
        + "</tr>"
    )


def annotators_section(data: ReportData, plots: dict[str, str], empty: dict[str, str]) -> str:
    """The section ('' when no answer was pulled yet)."""
    figures = (data.annotators or {}).get("annotators") or {}
    if not figures:
        return ""
    head = "".join(
        f"<th class='num'>{escape(c)}</th>" if num else f"<th>{escape(c)}</th>" for c, num in COLUMNS
    )
    rows = "".join(_row(name, figures[name]) for name in sorted(figures))
    parts = [
        "<section class='annotators'><h2>Annotators</h2>",
        f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>",
    ]
    for name in sorted(figures):
        if figures[name]["flags"]:
            why = "; ".join(figures[name]["flags"])
            parts.append(f'<p class="note behind">Flagged (still counted): {escape(name)}: {escape(why)}</p>')
    alphas = [r for r in data.annotators.get("rounds", []) if r["alpha"] is not None]
    if alphas:
        text = ", ".join(f"{r['round']} {r['alpha']:.2f}" for r in alphas)
        parts.append(f'<p class="note">Krippendorff\'s α per round (a/b/tie): {escape(text)}</p>')
    if PLOT in plots:
        parts.append(
            f'<figure><img src="{escape(plots[PLOT])}" alt="Annotator reliability">'
            f"<figcaption>{escape(CAPTION)}</figcaption></figure>"
        )
    elif PLOT in empty:
        parts.append(f'<p class="empty">{escape(empty[PLOT])}</p>')
    parts.append(
        '<p class="note">Cumulative over every round, each answer in its latest version; per round and Cohen\'s '
        "κ between each pair of annotators: report.json, key annotators. s / answer = median gap between an "
        "annotator's consecutive answers (pauses over 10 minutes left out). Flagged against [quality]; a "
        "flagged annotator's answers keep counting until the operator acts.</p></section>"
    )
    return "".join(parts)
