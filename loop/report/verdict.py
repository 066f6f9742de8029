"""The report's one-line answer: did PVar beat random, and at how many labels?

Compares the PVar arm with every random arm (random repeated over seeds is several arms) round by round, on
the eval the curves use. "Ahead" needs the PVar interval to lie above every random run's interval:
conservative, so an overlap is reported as "no clear difference", never as a win.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loop.acquisition.strategies import Strategy
from storage.statuses import PRODUCTION_ARM

if TYPE_CHECKING:
    from loop.report.contents import CurvePoint, ReportData

METHOD, BASELINE = Strategy.PVAR, Strategy.RANDOM  # the arm under test and the one it must beat


def _fmt(p: CurvePoint) -> str:
    e = p.eval
    return f"{e.win_rate:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


def baseline_spread(baseline: dict[str, Any]) -> str:
    """After the baseline's mean win rate: its interval for one run, the range of the runs for several."""
    if baseline["ci"] is not None:
        return f" [{baseline['ci'][0]:.3f}, {baseline['ci'][1]:.3f}]"
    return f" (runs {baseline['win_rate_min']:.3f}–{baseline['win_rate_max']:.3f})"


def _outcome(method: CurvePoint, baselines: list[CurvePoint]) -> str:
    if method.eval.ci_low > max(b.eval.ci_high for b in baselines):
        return "ahead"
    if method.eval.ci_high < min(b.eval.ci_low for b in baselines):
        return "behind"
    return "overlap"


def _method_arm(data: ReportData) -> str | None:
    arms = [a for a, s in data.arms.items() if s == METHOD and a in data.curves]
    if not arms:
        return None
    return METHOD if METHOD in arms else (PRODUCTION_ARM if PRODUCTION_ARM in arms else sorted(arms)[0])


def verdict(data: ReportData) -> dict[str, Any]:
    """{"status", "headline", ...}; status: no-rounds|no-evals|no-comparison|ahead|behind|overlap."""
    if not data.rounds:
        return {
            "status": "no-rounds",
            "headline": "No rounds yet: run the loop (or `pvar-loop demo`) and build the report again.",
        }
    if not data.curves:
        return {
            "status": "no-evals",
            "headline": f"{len(data.rounds)} round(s), no evaluations yet: the eval curve appears once a "
            "round's output policy is evaluated.",
        }
    method = _method_arm(data)
    baselines = sorted(a for a, s in data.arms.items() if s == BASELINE and a in data.curves)
    if method is None or not baselines:
        return _single(data)

    by_round = {p.round_number: p for p in data.curves[method] if p.round_number is not None}
    rows = []
    for number in sorted(by_round):
        base = [p for a in baselines for p in data.curves[a] if p.round_number == number]
        if not base:
            continue
        m = by_round[number]
        rates = [b.eval.win_rate for b in base]
        rows.append(
            {
                "round": number,
                "method": {
                    "labels": m.labels,
                    "win_rate": m.eval.win_rate,
                    "ci": [m.eval.ci_low, m.eval.ci_high],
                },
                "baseline": {
                    "runs": len(base),
                    "labels_mean": sum(b.labels for b in base) / len(base),
                    "win_rate_mean": sum(rates) / len(rates),
                    "win_rate_min": min(rates),
                    "win_rate_max": max(rates),
                    "ci": [base[0].eval.ci_low, base[0].eval.ci_high] if len(base) == 1 else None,
                },
                "outcome": _outcome(m, base),
            }
        )
    if not rows:
        return {
            **_single(data),
            "status": "no-comparison",
            "headline": f"The {method!r} and random arms have no evaluated round in common yet.",
        }
    last = rows[-1]
    first_ahead = next((r for r in rows if r["outcome"] == "ahead"), None)
    b = last["baseline"]
    seeds = f"{b['runs']} runs" if b["runs"] > 1 else "1 run"
    spread = baseline_spread(b)
    said = {
        "ahead": "PVar is ahead: its interval lies above every random run's interval.",
        "behind": "PVar is behind: its interval lies below every random run's interval.",
        "overlap": "No clear difference: the intervals overlap.",
    }[last["outcome"]]
    headline = (
        f"After round {last['round']}: PVar (arm {method!r}, {last['method']['labels']} answers) win rate "
        f"{_fmt(by_round[last['round']])} vs random ({seeds}, {b['labels_mean']:.0f} answers) "
        f"{b['win_rate_mean']:.3f}{spread}. {said}"
    )
    if first_ahead is not None:
        headline += (
            f" First ahead after round {first_ahead['round']} ({first_ahead['method']['labels']} answers)."
        )
    return {
        "status": last["outcome"],
        "headline": headline,
        "method_arm": method,
        "baseline_arms": baselines,
        "by_round": rows,
        "first_ahead": None
        if first_ahead is None
        else {"round": first_ahead["round"], "labels": first_ahead["method"]["labels"]},
    }


def _single(data: ReportData) -> dict[str, Any]:
    """No PVar-vs-random pair: say where each evaluated arm stands now."""
    latest = {arm: pts[-1] for arm, pts in data.curves.items()}
    parts = [
        f"arm {arm!r} ({data.arms.get(arm, '?')}): {_fmt(p)} after {p.labels} answers"
        for arm, p in latest.items()
    ]
    return {
        "status": "no-comparison",
        "headline": "Latest win rate: "
        + "; ".join(parts)
        + ". No PVar and random arms to compare: `pvar-loop experiment` runs both.",
        "latest": {arm: {"labels": p.labels, "win_rate": p.eval.win_rate} for arm, p in latest.items()},
    }
