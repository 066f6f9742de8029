"""Do PVar-picked labels carry more signal than random (audit) ones? Per round and cumulative, with 95%
intervals: Wilson per group, Newcombe's hybrid score interval (his method 10) for the difference.

Pure: takes one outcome per item (storage.repositories.items.audit_outcomes) and returns numbers and one
sentence; numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from annotation.aggregate import agreement
from storage.statuses import Choice, ItemStatus

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for x successes out of n (n = 0: the uninformative [0, 1])."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= x <= n:
        raise ValueError(f"need 0 <= x <= n, got x={x}, n={n}")
    p = x / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return float(max((centre - half) / denom, 0.0)), float(min((centre + half) / denom, 1.0))


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 from the two Wilson intervals."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return (
        float(d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)),
        float(d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)),
    )


class ItemOutcome(Protocol):
    round_number: int
    audit: bool
    status: ItemStatus  # decided | undecided (items still waiting are not passed in)
    decision: Choice | None  # a | b | tie; "a" = the selection reward model's higher-reward response won
    votes: dict[str, int]
    dpo_margin: float | None  # DPO's implicit reward margin after training on it (None: not trained on yet)


@dataclass(frozen=True)
class Rate:
    x: int
    n: int

    @property
    def value(self) -> float | None:
        return self.x / self.n if self.n else None

    def as_dict(self) -> dict[str, Any]:
        return {"x": self.x, "n": self.n, "rate": self.value, "ci": list(wilson(self.x, self.n))}


def _diff(pvar: Rate, audit: Rate) -> dict[str, Any] | None:
    if not (pvar.n and audit.n):
        return None
    return {"diff": pvar.value - audit.value, "ci": list(newcombe(pvar.x, pvar.n, audit.x, audit.n))}


def _mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """Mean with a normal 95% interval (None below 2 values: no spread to measure)."""
    n = len(values)
    if n < 2:
        return {"n": n, "mean": float(values[0]) if n else None, "ci": None}
    x = np.asarray(values, dtype=float)
    half = Z95 * x.std(ddof=1) / np.sqrt(n)
    return {"n": n, "mean": float(x.mean()), "ci": [float(x.mean() - half), float(x.mean() + half)]}


def _mean_diff(a: Sequence[float], b: Sequence[float]) -> dict[str, Any] | None:
    """Welch: difference of means with a normal 95% interval from the two standard errors."""
    if len(a) < 2 or len(b) < 2:
        return None
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(xa.mean() - xb.mean())
    half = Z95 * np.sqrt(xa.var(ddof=1) / xa.size + xb.var(ddof=1) / xb.size)
    return {"diff": d, "ci": [float(d - half), float(d + half)]}


def _votes(votes: dict[str, int]) -> list[str]:
    return [c for c in Choice.voting() for _ in range(int(votes.get(c, 0)))]


def compare(items: Sequence[ItemOutcome]) -> dict[str, Any]:
    """Three measures, PVar-picked vs audit: decided (a/b, not tie or undecided) among items with an outcome;
    annotator agreement (items whose voters all agree, among items with 2+ votes; also aggregate.py's pairwise
    agreement and Fleiss' kappa); reward-model agreement (decision "a") among decided a/b items. Also DPO's
    implicit reward margin on the trained-on items (mean, normal interval; Welch for the difference)."""
    out: dict[str, Any] = {}
    groups = {"pvar": [i for i in items if not i.audit], "audit": [i for i in items if i.audit]}
    rates: dict[str, dict[str, Rate]] = {}
    margins = {k: [i.dpo_margin for i in g if i.dpo_margin is not None] for k, g in groups.items()}
    for name, group in groups.items():
        decided = [i for i in group if i.status == ItemStatus.DECIDED and i.decision in Choice.preferring()]
        voted = [_votes(i.votes) for i in group]
        multi = [v for v in voted if len(v) >= 2]
        agr = agreement(voted)
        rates[name] = {
            "decided": Rate(len(decided), len(group)),
            "annotator_agreement": Rate(sum(len(set(v)) == 1 for v in multi), len(multi)),
            "rm_agreement": Rate(sum(i.decision == Choice.A for i in decided), len(decided)),
        }
        out[name] = {k: r.as_dict() for k, r in rates[name].items()}
        out[name]["annotator_agreement"].update(pairwise=agr.pairwise, fleiss_kappa=agr.fleiss_kappa)
        out[name]["dpo_margin"] = _mean_ci(margins[name])
    out["difference"] = {k: _diff(rates["pvar"][k], rates["audit"][k]) for k in rates["pvar"]}
    out["difference"]["dpo_margin"] = _mean_diff(margins["pvar"], margins["audit"])
    return out


def audit_summary(items: Iterable[ItemOutcome]) -> dict[str, Any]:
    """Per round and cumulative comparison plus the one-sentence answer (`sentence`)."""
    items = list(items)
    rounds = sorted({i.round_number for i in items})
    cumulative = compare(items)
    return {
        "rounds": [
            {"round": r, **compare([i for i in items if i.round_number == r])}
            for r in rounds
            if any(i.audit for i in items if i.round_number == r)
        ],
        "cumulative": cumulative,
        "sentence": sentence(cumulative, len(rounds)),
        "margin_sentence": margin_sentence(cumulative),
    }


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _pts(v: float) -> str:
    return f"{100 * v:+.0f}"


def sentence(cumulative: dict[str, Any], rounds: int) -> str:
    """Whether PVar-selected items carry more signal (decided rate) than random ones so far, honestly."""
    pvar, audit = cumulative["pvar"]["decided"], cumulative["audit"]["decided"]
    cannot = "Audit: cannot tell yet whether PVar items carry more signal than random ones"
    if audit["n"] == 0:
        return f"{cannot}: no audit item has an outcome yet."
    if pvar["n"] == 0:
        return f"{cannot}: no PVar item has an outcome yet."
    d = cumulative["difference"]["decided"]
    lo, hi = d["ci"]
    over = f"over {rounds} round{'s' if rounds != 1 else ''}"
    facts = (
        f"PVar items: {_pct(pvar['rate'])} decided vs {_pct(audit['rate'])} for audit items, "
        f"{_pts(d['diff'])} pts [{_pts(lo)}, {_pts(hi)}] {over}"
    )
    if lo > 0:
        return f"{facts}: PVar-selected items carry more signal than random ones so far."
    if hi < 0:
        return f"{facts}: PVar-selected items carry less signal than random ones so far."
    return f"{facts}: cannot tell yet, the interval contains 0."


def _interval(ci: list[float] | None) -> str:
    return f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""


def margin_sentence(cumulative: dict[str, Any]) -> str | None:
    """DPO's implicit reward margin on PVar vs audit items after training; None before any margin exists."""
    pvar, audit = cumulative["pvar"]["dpo_margin"], cumulative["audit"]["dpo_margin"]
    if not (pvar["n"] and audit["n"]):
        return None
    text = (
        f"DPO reward margin after training: PVar items {pvar['mean']:+.2f}{_interval(pvar['ci'])} (n={pvar['n']}) "
        f"vs audit items {audit['mean']:+.2f}{_interval(audit['ci'])} (n={audit['n']})"
    )
    d = cumulative["difference"]["dpo_margin"]
    return f"{text}, difference {d['diff']:+.2f}{_interval(d['ci'])}." if d else f"{text}."
