"""Label aggregation: a majority vote per item and an agreement statistic per round. Pure functions."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from storage.statuses import Choice, ItemStatus


class DecisionStatus(StrEnum):
    """What the answers so far make of an item: waiting for the overlap, decided, or undecided."""

    WAITING = "waiting"
    DECIDED = ItemStatus.DECIDED.value
    UNDECIDED = ItemStatus.UNDECIDED.value

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def item_status(self) -> ItemStatus:
        """The status the item is stored with: one still waiting for answers stays pushed."""
        return ItemStatus.PUSHED if self is DecisionStatus.WAITING else ItemStatus(self.value)


@dataclass(frozen=True)
class Decision:
    status: DecisionStatus
    choice: Choice | None  # a | b | tie when decided
    votes: dict[Choice, int]

    @property
    def disagreement(self) -> bool:
        return sum(1 for c in Choice.voting() if self.votes.get(c)) > 1


def decide(answers: Iterable[str], min_answers: int = 1) -> Decision:
    """Majority vote over a/b/tie; discards are counted but do not vote. Fewer than `min_answers` answers
    (the required annotator overlap) is 'waiting'; a tie between the top choices, or only discards, is
    'undecided' (no training signal)."""
    counts = Counter(answers)
    unknown = set(counts) - set(Choice)
    if unknown:
        raise ValueError(f"unknown answers {sorted(unknown)}; allowed: {', '.join(Choice)}")
    votes = {c: counts[c] for c in Choice if counts[c]}
    voting = [(counts[c], c) for c in Choice.voting() if counts[c]]
    if sum(counts.values()) < min_answers:
        return Decision(DecisionStatus.WAITING, None, votes)
    if not voting:
        return Decision(DecisionStatus.UNDECIDED, None, votes)
    voting.sort(reverse=True)
    if len(voting) > 1 and voting[0][0] == voting[1][0]:
        return Decision(DecisionStatus.UNDECIDED, None, votes)
    return Decision(DecisionStatus.DECIDED, voting[0][1], votes)


@dataclass(frozen=True)
class Agreement:
    items: int  # items with at least two votes (the only ones agreement is defined on)
    pairwise: float | None  # share of annotator pairs, per item, that gave the same answer
    fleiss_kappa: float | None  # chance-corrected; None when undefined (fewer than 2 items or no variation)
    unanimous: float | None = None  # share of those items on which every vote was the same


def agreement(votes_per_item: Sequence[Sequence[str]]) -> Agreement:
    """Pairwise agreement and Fleiss' kappa over a/b/tie votes (raters per item may differ)."""
    voting = Choice.voting()
    rows = [Counter(v for v in votes if v in voting) for votes in votes_per_item]
    rows = [r for r in rows if sum(r.values()) >= 2]
    if not rows:
        return Agreement(0, None, None)
    per_item, totals, n_votes = [], Counter(), 0
    unanimous = sum(1 for r in rows if len(r) == 1) / len(rows)
    for r in rows:
        n = sum(r.values())
        per_item.append(sum(c * (c - 1) for c in r.values()) / (n * (n - 1)))
        totals.update(r)
        n_votes += n
    p_bar = sum(per_item) / len(per_item)
    p_e = sum((totals[c] / n_votes) ** 2 for c in voting)
    kappa = None if len(rows) < 2 or p_e >= 1.0 else (p_bar - p_e) / (1.0 - p_e)
    return Agreement(len(rows), p_bar, kappa, unanimous)


MAJORITY, DAWID_SKENE = "majority", "dawid-skene"
METHODS = (MAJORITY, DAWID_SKENE)


def majority_confidence(decision: Decision) -> float | None:
    """The share of the a/b/tie votes that went to the decision (majority's 'confidence': no model behind
    it); None when nothing was decided."""
    voting = sum(decision.votes.get(c, 0) for c in Choice.voting())
    if decision.choice is None or not voting:
        return None
    return decision.votes.get(decision.choice, 0) / voting


DEFAULT_MIN_CONFIDENCE = 0.6


def dawid_skene(answers: Iterable[tuple[str, str, str]]) -> dict[str, tuple[Choice | None, float]]:
    """{item: (choice, posterior probability)} by Dawid-Skene (crowd-kit) over (item, annotator, choice)
    answers; discards do not vote. The choice is None when the top posteriors are equal (no signal either
    way). Each annotator gets a confusion matrix, so one who always answers "a" stops outvoting the careful.
    The last fit is kept: the same answers again (a pull with nothing new) are not fitted again. The result
    is shared with later calls: read it, do not change it."""
    return _fit(tuple(sorted((i, w, str(c)) for i, w, c in answers if c in Choice.voting())))


@lru_cache(maxsize=1)  # keyed on every answer fed to the model: a new answer or exclusion refits
def _fit(rows: tuple[tuple[str, str, str], ...]) -> dict[str, tuple[Choice | None, float]]:
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    if not rows:
        return {}
    frame = pd.DataFrame(list(rows), columns=["task", "worker", "label"])
    with (
        warnings.catch_warnings()
    ):  # crowd-kit 1.4.2 uses pandas keywords pandas 3 deprecates: noise per pull
        warnings.filterwarnings("ignore", module=r"crowdkit\b")
        probas = DawidSkene(n_iter=100).fit(frame).probas_
    out: dict[str, tuple[Choice | None, float]] = {}
    for task, row in probas.iterrows():
        ranked = row.sort_values(ascending=False)
        top, p = ranked.index[0], float(ranked.iloc[0])
        tied = len(ranked) > 1 and abs(p - float(ranked.iloc[1])) < 1e-9
        out[str(task)] = (None if tied else Choice(top), p)
    return out
