"""The report's PNG plots (matplotlib, Agg). Each function draws one figure from ReportData and returns False,
writing nothing, when it has no data to show: the page then says so instead of showing an empty image."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from loop.report.contents import ReportData, RoundRow

# One colour per strategy so the method and its baseline read at a glance in every plot.
STRATEGY_COLOURS = {
    "pvar": "#d62728",
    "random": "#7f7f7f",
    "low-pvar": "#1f77b4",
    "reward-gap": "#2ca02c",
    "full": "#000000",
}
OTHER_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")
LINESTYLES = ("-", "--", ":", "-.")
DPI = 110


def pyplot():
    """matplotlib.pyplot on the Agg backend (importing it is slow: the demo preloads it while rounds run)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def arm_styles(data: ReportData) -> dict[str, tuple[str, str]]:
    """arm -> (colour, linestyle): colour from the strategy, linestyle tells apart arms of one strategy."""
    styles: dict[str, tuple[str, str]] = {}
    used: dict[str, int] = {}
    others = 0
    for arm, strategy in data.arms.items():
        if strategy in STRATEGY_COLOURS:
            colour = STRATEGY_COLOURS[strategy]
        else:
            colour, others = OTHER_COLOURS[others % len(OTHER_COLOURS)], others + 1
        n = used.get(colour, 0)
        used[colour] = n + 1
        styles[arm] = (colour, LINESTYLES[n % len(LINESTYLES)])
    return styles


def _round_ticks(ax, positions, rounds: list[RoundRow]) -> None:
    if len(rounds) <= 14:
        ax.set_xticks(positions, [f"{r.arm}\nround {r.number}" for r in rounds], fontsize=8)
    else:  # past ~14 rounds the names collide: one tilted line each
        labels = [f"{r.arm} #{r.number}" for r in rounds]
        ax.set_xticks(positions, labels, fontsize=8, rotation=40, ha="right", rotation_mode="anchor")


def _width(n: int) -> float:
    # Wider than ~15 in would be shrunk on the page until the text is unreadable.
    return float(min(max(8.0, 0.7 * n + 2.5), 15.0))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    pyplot().close(fig)


def plot_pvar(data: ReportData, path: Path) -> bool:
    """Violin of each round's scored pool (its input policy), the prompts it selected as dots."""
    rounds = [r for r in data.rounds if r.pvar is not None and data.pools[r.pvar.pool].values]
    if not rounds:
        return False
    plt = pyplot()
    styles = arm_styles(data)
    fig, ax = plt.subplots(figsize=(_width(len(rounds)), 5.0))
    positions = np.arange(1, len(rounds) + 1)
    rng = np.random.default_rng(0)  # fixed jitter: the same data gives the same picture
    for pos, r in zip(positions, rounds, strict=True):
        values = data.pools[r.pvar.pool].values
        if len(set(values)) > 1:  # a KDE needs spread
            parts = ax.violinplot([values], positions=[pos], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor("#c6dbef")
                body.set_edgecolor("#6baed6")
                body.set_alpha(0.9)
        ax.hlines(np.median(values), pos - 0.3, pos + 0.3, colors="#08519c", linewidth=1.5)
        if r.pvar.selected:
            x = pos + rng.uniform(-0.12, 0.12, len(r.pvar.selected))
            ax.scatter(
                x, r.pvar.selected, s=16, color=styles[r.arm][0], edgecolors="black", linewidths=0.4, zorder=3
            )
        if r.pvar.selected_percentile is not None:
            ax.annotate(
                f"pct {r.pvar.selected_percentile:.0f}",
                (pos, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, -12),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    _round_ticks(ax, positions, rounds)
    ax.set_xlim(0.4, len(rounds) + 0.6)
    top = max(max(data.pools[r.pvar.pool].values) for r in rounds)
    ax.set_ylim(bottom=0, top=top * 1.15 if top > 0 else 0.25)
    models = sorted({r.pvar.reward_model for r in rounds})
    ax.set_ylabel("PVar")
    title = (
        "PVar of the scored pool per round (violin; line = median) and the prompts each round selected (dots)"
    )
    ax.set_title(title, fontsize=10)
    note = "reward model: " + ", ".join(models)
    if len(models) > 1:
        note += " (values are comparable only within one reward model)"
    note += ".  pct = mean percentile of the selected prompts in the pool (50 = random, 100 = top)"
    ax.set_xlabel(note, fontsize=7, color="#555555")
    _save(fig, path)
    return True


def plot_eval(data: ReportData, path: Path) -> bool:
    """Win rate vs the reference (with its interval) against cumulative answers, one line per arm."""
    if not data.curves:
        return False
    plt = pyplot()
    styles = arm_styles(data)
    fig, ax = plt.subplots(figsize=(10.0, 5.2))
    # Arms share label counts: shift each a little sideways so their intervals do not hide each other.
    span = max((p.labels for pts in data.curves.values() for p in pts), default=0) or 1
    n = len(data.curves)
    for i, (arm, points) in enumerate(data.curves.items()):
        x = np.array([p.labels for p in points]) + (i - (n - 1) / 2) * 0.012 * span
        y = np.array([p.eval.win_rate for p in points])
        low = np.clip(y - np.array([p.eval.ci_low for p in points]), 0, None)
        high = np.clip(np.array([p.eval.ci_high for p in points]) - y, 0, None)
        colour, style = styles[arm]
        ax.errorbar(
            x,
            y,
            yerr=[low, high],
            color=colour,
            linestyle=style,
            marker="o",
            markersize=5,
            capsize=4,
            linewidth=2 if data.arms.get(arm) == "pvar" else 1.4,
            label=f"{arm} ({data.arms.get(arm, '?')})",
        )
    ax.axhline(0.5, color="#999999", linestyle=":", linewidth=1, label="reference (0.5)")
    ax.set_xlim(*eval_xlim(span))
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    xlabel = "cumulative answers (one annotator's answer to one item)"
    ax.set_xlabel(xlabel + ("; arms nudged sideways to keep intervals apart" if n > 1 else ""))
    ax.set_ylabel("win rate vs reference")
    ax.set_title(f"Eval: win rate vs {data.eval_reference} (judge {data.eval_judge})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    _save(fig, path)
    return True


def eval_xlim(span: int) -> tuple[float, float]:
    """From 0 labels to a little past the most: one round's single point otherwise gets matplotlib's window of
    a label either side of it (15.2 to 16.8 labels), which reads as a scale it does not have."""
    return -0.04 * span, 1.06 * span


def plot_agreement(data: ReportData, path: Path) -> bool:
    """Per round: pairwise agreement and Fleiss' kappa (top), share of tie/undecided items (bottom)."""
    rounds = [r for r in data.rounds if r.agreement_items or r.undecided_share is not None]
    if not rounds:
        return False
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(_width(len(rounds)), 6.5), sharex=True)
    x = np.arange(len(rounds))
    pair = [np.nan if r.pairwise_agreement is None else r.pairwise_agreement for r in rounds]
    kappa = [np.nan if r.fleiss_kappa is None else r.fleiss_kappa for r in rounds]
    top.bar(x - 0.2, pair, 0.4, color="#4292c6", label="pairwise agreement")
    top.bar(x + 0.2, kappa, 0.4, color="#fd8d3c", label="Fleiss' kappa")
    for i, (p, k) in enumerate(zip(pair, kappa, strict=True)):
        if np.isnan(p):
            top.text(i - 0.2, 0.02, "n/a", ha="center", fontsize=7)
        if np.isnan(k):
            top.text(i + 0.2, 0.02, "n/a", ha="center", fontsize=7)
    top.axhline(0, color="black", linewidth=0.8)
    top.set_ylim(min(-0.1, np.nanmin(kappa) - 0.1) if not np.all(np.isnan(kappa)) else -0.1, 1.05)
    top.set_ylabel("agreement")
    top.set_title("Label agreement per round (over items with 2+ votes)", fontsize=10)
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    tie = [0 if r.tie_share is None else r.tie_share for r in rounds]
    und = [0 if r.undecided_share is None else r.undecided_share for r in rounds]
    bottom.bar(x, tie, 0.6, color="#fdd0a2", label="tie (decided as tie)")
    bottom.bar(x, und, 0.6, bottom=tie, color="#a63603", label="undecided (no majority)")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("share of resolved items")
    bottom.set_title("Items without a training signal", fontsize=10)
    bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _round_ticks(bottom, x, rounds)
    _save(fig, path)
    return True


def plot_budget(data: ReportData, path: Path) -> bool:
    """Per round: the budget, the items pushed to annotators (withdrawn ones of a cancelled round hatched), and
    the items decided."""
    rounds = data.rounds
    if not rounds:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(_width(len(rounds)), 4.5))
    x = np.arange(len(rounds))
    for name, (slot, values, colour, hatch) in budget_bars(rounds).items():
        ax.bar(
            x + (slot - 1) * 0.27,
            values,
            0.27,
            color=colour,
            hatch=hatch,
            label=name,
            edgecolor="#555555",
            linewidth=0.4,
        )
    _round_ticks(ax, x, rounds)
    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel("prompts / items")
    ax.set_title("Budget use per round", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return True


def budget_bars(rounds: list[RoundRow]) -> dict[str, tuple[int, list[int], str, str | None]]:
    """Legend name -> (slot, value per round, colour, hatch). A cancelled round's records were withdrawn from
    Argilla: they are drawn hatched as withdrawn, not as items pushed to annotators."""
    cancelled = [r.status == "cancelled" for r in rounds]
    bars = {
        "budget": (0, [r.budget for r in rounds], "#d9d9d9", None),
        "items pushed": (
            1,
            [0 if c else r.pushed for r, c in zip(rounds, cancelled, strict=True)],
            "#6baed6",
            None,
        ),
        "decided (a/b)": (2, [r.decided for r in rounds], "#2171b5", None),
    }
    if any(c and r.pushed for r, c in zip(rounds, cancelled, strict=True)):
        withdrawn = [r.pushed if c else 0 for r, c in zip(rounds, cancelled, strict=True)]
        bars["withdrawn (round cancelled)"] = (1, withdrawn, "#ffffff", "//")
    return bars


def plot_annotators(data: ReportData, path: Path) -> bool:
    """Per annotator (cumulative): the share of a/b answers choosing the side shown as A with its 95% interval
    against the [quality] band around 0.5 (left), and gold accuracy with its interval, or agreement with the
    others' majority where there is no gold (right). Flagged annotators in red."""
    figures = (data.annotators or {}).get("annotators") or {}
    if not figures:
        return False
    limits = data.annotators.get("thresholds") or {}
    plt = pyplot()
    names = sorted(figures, reverse=True)  # first name on top
    y = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 1.2 + 0.45 * len(names)), sharey=True)
    bias = limits.get("max_position_bias")
    if bias is not None:
        left.axvspan(0.5 - bias, 0.5 + bias, color="#e5f5e0")
    left.axvline(0.5, color="#999999", linewidth=0.8)
    gold = any(figures[n]["gold_accuracy"] is not None for n in names)
    floor = limits.get("min_gold_accuracy")
    if gold and floor is not None:
        right.axvline(floor, color="#c62828", linewidth=0.8, linestyle="--")
    for i, name in enumerate(names):
        f = figures[name]
        colour = "#c62828" if f["flags"] else "#2171b5"
        _dot(left, i, f["position_bias"], f["position_interval"], colour)
        if gold:
            _dot(right, i, f["gold_accuracy"], f["gold_interval"], colour)
        else:
            _dot(right, i, f["majority_agreement"], None, colour)
    left.set_yticks(y, names, fontsize=8)
    left.set_ylim(-0.6, len(names) - 0.4)
    for ax in (left, right):
        ax.set_xlim(-0.02, 1.02)
        ax.grid(axis="x", alpha=0.3)
    band = "" if bias is None else f"; green: 0.5 ± max_position_bias {bias:g}"
    left.set_xlabel(f"share of a/b answers choosing the side shown as A\n(95% CI{band})", fontsize=9)
    line = "" if floor is None else f"; dashed: min_gold_accuracy {floor:g}"
    right.set_xlabel(
        f"gold accuracy\n(95% CI{line})" if gold else "agreement with the others' majority", fontsize=9
    )
    left.set_title("Position bias per annotator (red: flagged)", fontsize=10)
    right.set_title("Gold accuracy" if gold else "Agreement with the majority (no gold answers)", fontsize=10)
    _save(fig, path)
    return True


def _dot(ax, y: int, value: float | None, interval, colour: str) -> None:
    if value is None:
        ax.text(0.02, y, "n/a", va="center", fontsize=7, color="#666666")
        return
    if interval is not None:
        ax.plot(interval, [y, y], color=colour, linewidth=1.5)
    ax.plot([value], [y], "o", color=colour, markersize=5)


# name -> (file, drawing function, what the page says when there is nothing to draw)
PLOTS = {
    "eval": ("eval_vs_labels.png", plot_eval, "No evaluations of the rounds' policies yet."),
    "pvar": ("pvar_distribution.png", plot_pvar, "No PVar scores for the rounds' input policies yet."),
    "agreement": ("label_agreement.png", plot_agreement, "No labels yet."),
    "budget": ("budget_use.png", plot_budget, "No rounds yet."),
    "annotators": ("annotator_reliability.png", plot_annotators, "No answers pulled yet."),
}
