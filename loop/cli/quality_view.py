"""Per-annotator reliability (loop.quality) as text: the `annotators list` table and the `status` lines."""

from __future__ import annotations

from collections.abc import Collection

QUALITY_COLUMNS = (
    ("annotator", "<"),
    ("role", "<"),
    ("submitted", ">"),
    ("discarded", ">"),
    ("gold (95% CI)", ">"),
    ("majority", ">"),
    ("shown A", ">"),
    ("ties", ">"),
    ("discards", ">"),
    ("s/answer", ">"),
    ("flags", ">"),
)
LEGEND = (
    "gold = accuracy on gold items; majority = agreement with the other annotators' majority; shown A = share of "
    "a/b answers choosing the side shown as A (~0.5 expected); s/answer = median gap between consecutive answers"
)


def _share(value: float | None, n: int) -> str:
    return "-" if value is None else f"{value:.2f} ({n})"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def gold_cell(f: dict) -> str:
    if f["gold_accuracy"] is None:
        return "-"
    low, high = f["gold_interval"]
    return f"{f['gold_accuracy']:.2f} [{low:.2f}-{high:.2f}] ({f['gold_answers']})"


def cells(f: dict) -> dict[str, str]:
    """The reliability columns of one annotator's figures (loop.quality.reliability.Figures.as_json)."""
    pace = f["seconds_per_answer"]
    return {
        "gold (95% CI)": gold_cell(f),
        "majority": _share(f["majority_agreement"], f["majority_items"]),
        "shown A": _share(f["position_bias"], f["ab_answers"]),
        "ties": _rate(f["tie_rate"]),
        "discards": _rate(f["discard_rate"]),
        "s/answer": "-" if pace is None else f"{pace:.1f}",
        "flags": str(len(f["flags"])) if f["flags"] else "",
    }


def table(rows: list[dict]) -> list[str]:
    """`annotators list`: one row per annotator (rows as `--json` prints them), kappa and warning lines under
    it, then each round's Krippendorff's alpha."""
    none = cells(_EMPTY)
    body = []
    for r in rows:
        role = r["role"] if r["in_workspace"] else "removed"
        if r.get("excluded"):
            role = f"{role}, excluded"  # answers kept, not counted (`annotators include` counts them again)
        figures = r.get("reliability")
        body.append(
            {
                "annotator": r["username"],
                "role": str(role),
                "submitted": str(r["submitted"]),
                "discarded": str(r["discarded"]),
                **(cells(figures) if figures else none),
            }
        )
    widths = {c: max(len(c), *(len(b[c]) for b in body)) for c, _ in QUALITY_COLUMNS} if body else {}

    def line(values: dict) -> str:
        return "  ".join(f"{values[c]:{align}{widths[c]}}" for c, align in QUALITY_COLUMNS).rstrip()

    out = ["  " + line({c: c for c, _ in QUALITY_COLUMNS})] if body else []
    for r, b in zip(rows, body, strict=True):
        out.append("  " + line(b))
        figures = r.get("reliability")
        if figures and figures["kappa"]:
            out.append("    Cohen's kappa: " + kappa_text(figures["kappa"]))
    excluded = {r["username"] for r in rows if r.get("excluded")}
    out += warning_lines({r["username"]: r["reliability"] for r in rows if r.get("reliability")}, excluded)
    return out


def kappa_text(kappa: dict) -> str:
    return ", ".join(
        f"{other} {'-' if k['kappa'] is None else format(k['kappa'], '.2f')} ({k['items']} items)"
        for other, k in kappa.items()
    )


def warning_lines(figures: dict[str, dict], excluded: Collection[str] = ()) -> list[str]:
    """One line per flagged annotator: reported, never dropped (an excluded one is said to be)."""
    return [
        f"warning: annotator {who} flagged ({'excluded' if who in excluded else 'still counted'}): "
        f"{'; '.join(f['flags'])}"
        for who, f in figures.items()
        if f["flags"]
    ]


def status_text(f: dict) -> str:
    """The figures on an annotator's `status` line."""
    c = cells(f)
    return (
        f"gold {c['gold (95% CI)']}, majority {c['majority']}, shown A {c['shown A']}, ties {c['ties']}, "
        f"discards {c['discards']}, {c['s/answer']} s/answer"
    )


def alpha_lines(rounds: list[dict]) -> list[str]:
    if not rounds:
        return []
    return [
        "Krippendorff's alpha per round (a/b/tie): "
        + ", ".join(
            f"{r['round']} {'-' if r['alpha'] is None else format(r['alpha'], '.2f')}" for r in rounds
        )
    ]


_EMPTY = {
    "gold_accuracy": None,
    "gold_interval": None,
    "gold_answers": 0,
    "majority_agreement": None,
    "majority_items": 0,
    "position_bias": None,
    "ab_answers": 0,
    "tie_rate": None,
    "discard_rate": None,
    "seconds_per_answer": None,
    "flags": [],
}
