"""Per-annotator reliability, per round and cumulative: pure functions over answers (no database, no I/O).

Every figure reads the latest version of each answer; gold answers (operator-provided items with an expected
answer) come as any objects with GoldRow's attributes. Per annotator:

- gold accuracy: of their gold answers (discards apart: a discard is no vote), the share equal to the expected
  answer, with a Wilson 95% interval (statsmodels);
- agreement with the others' majority: over the round items they answered a/b/tie on which the OTHER
  annotators' a/b/tie votes have a strict plurality (annotation.aggregate.decide's rule), the share
  where they gave it;
- Cohen's kappa against each other annotator, on the round items both answered a/b/tie (statsmodels, from the
  3x3 a/b/tie table: scikit-learn's cohen_kappa_score costs ~20 ms a call and seconds to import, too much for
  every pair of every round on each `status`);
- position bias: of their a/b answers (round and gold items), the share that chose the side SHOWN as A. Each
  item's A/B swap is random, so a careful annotator sits near 0.5; Wilson 95% interval;
- tie and discard rates: of all their answers;
- seconds per answer: the median gap between their consecutive answers, ordered by when each was first given;
  a gap longer than BREAK_S is a break, not time spent on an answer, and is left out. Answers sent together
  (a bulk request) are 0 s apart.

Per round, Krippendorff's alpha (nominal, a/b/tie; discards missing) over every annotator of its items.

Human-evaluation answers (not blind: the evaluation dataset is shared) count in position bias, tie and discard
rates and the answer count, and stay out of majority agreement, Cohen's kappa and Krippendorff's alpha.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import pairwise
from statistics import median
from typing import Protocol

from storage.statuses import Choice

BREAK_S = 600.0  # a gap longer than this between two answers is a pause, not answering time
VOTES = (Choice.A, Choice.B, Choice.TIE)
VOTE_SET = frozenset(str(c) for c in VOTES)


@dataclass(frozen=True)
class ItemAnswer:
    """One annotator's answer to one round item (latest version), with the A/B swap it was shown with."""

    round_id: int
    item_id: str
    annotator: str
    choice: str  # a | b | tie | discard, our orientation
    swapped: bool  # b was shown as response A
    answered_at: datetime | None = None
    # Given without seeing the others' answers. A human evaluation's are not (its dataset is shared: each
    # annotator can read the others' verdicts), so they stay out of agreement, kappa and alpha.
    blind: bool = True


class GoldRow(Protocol):
    """What reliability reads of a gold answer (storage.repositories.gold.GoldAnswer has these attributes)."""

    @property
    def annotator(self) -> str: ...
    @property
    def round_id(self) -> int: ...
    @property
    def gold_id(self) -> int: ...
    @property
    def expected(self) -> str: ...  # a | b | tie, in the gold item's own a/b
    @property
    def answer(self) -> str: ...  # a | b | tie | discard, in the gold item's own a/b
    @property
    def shown_swapped(self) -> bool: ...  # the item's b was shown as response A
    @property
    def answered_at(self) -> datetime | None: ...


@dataclass
class Figures:
    """One annotator's reliability over a set of answers (a round, or all of them)."""

    answers: int = 0  # round and gold answers, discards included
    gold_answers: int = 0  # gold answers that voted (a/b/tie)
    gold_correct: int = 0
    gold_accuracy: float | None = None
    gold_interval: tuple[float, float] | None = None  # Wilson 95%
    majority_items: int = 0  # round items where the others had a strict plurality and this one voted
    majority_agreement: float | None = None
    kappa: dict[str, dict] = field(default_factory=dict)  # other annotator -> {"items": n, "kappa": k | None}
    ab_answers: int = 0  # a/b answers (round and gold): what position bias is a share of
    shown_a: int = 0  # of those, answers choosing the side shown as A
    position_bias: float | None = None  # shown_a / ab_answers
    position_interval: tuple[float, float] | None = None  # Wilson 95%
    tie_rate: float | None = None
    discard_rate: float | None = None
    seconds_per_answer: float | None = None  # median gap between consecutive answers (breaks left out)
    timed_gaps: int = 0
    flags: list[str] = field(default_factory=list)  # filled by loop.quality.flags

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class RoundReliability:
    figures: dict[str, Figures]  # annotator -> figures on this round
    alpha: float | None  # Krippendorff's alpha over the round's items (None: undefined)


@dataclass
class Reliability:
    annotators: dict[str, Figures]  # cumulative, by annotator name
    rounds: dict[int, RoundReliability]  # round id -> that round's figures


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    """The Wilson score 95% interval of successes/n (None for n = 0)."""
    if n == 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    return float(low), float(high)


def chose_shown_a(answer: str, swapped: bool) -> bool | None:
    """Whether an a/b answer (in the item's own orientation) picked the response shown as A; None for a tie
    or a discard."""
    if answer not in (Choice.A, Choice.B):
        return None
    return (answer == Choice.A) != swapped


def gold_accuracy(rows: Iterable[GoldRow]) -> tuple[int, int]:
    """(correct, voted) over gold answers: a discard does not vote."""
    voted = [r for r in rows if r.answer in VOTE_SET]
    return sum(1 for r in voted if r.answer == r.expected), len(voted)


def by_item(answers: Iterable[ItemAnswer]) -> dict[str, list[ItemAnswer]]:
    """Blind answers grouped by item: what the comparisons between annotators read (an answer given where the
    others' were visible says nothing about agreement)."""
    out: dict[str, list[ItemAnswer]] = defaultdict(list)
    for a in answers:
        if a.blind:
            out[a.item_id].append(a)
    return out


def majority_agreement(items: Mapping[str, list[ItemAnswer]], annotator: str) -> tuple[int, int]:
    """(agreed, compared): the annotator's a/b/tie answers against the strict plurality of the others' votes on
    the same items (items where the others have no plurality are not compared). `items`: by_item's."""
    agreed = compared = 0
    for item in items.values():
        own = [a.choice for a in item if a.annotator == annotator and a.choice in VOTE_SET]
        if not own:
            continue
        majority = plurality([a.choice for a in item if a.annotator != annotator])
        if majority is not None:
            compared += 1
            agreed += own[0] == majority
    return agreed, compared


def plurality(votes: Iterable[str]) -> str | None:
    """The strict plurality of a/b/tie votes (discards do not vote), None without one: the rule of
    annotation.aggregate.decide with no overlap required, without its input checks (this runs once per
    annotator and item on every `status`)."""
    counts: dict[str, int] = {}
    for v in votes:
        if v in VOTE_SET:
            counts[v] = counts.get(v, 0) + 1
    if not counts:
        return None
    most = max(counts.values())
    top = [v for v, n in counts.items() if n == most]
    return str(top[0]) if len(top) == 1 else None


def pairwise_kappa(items: Mapping[str, list[ItemAnswer]], annotator: str) -> dict[str, dict]:
    """Cohen's kappa of the annotator against each other one on the items both answered a/b/tie. None where
    it is undefined (fewer than two shared items, or both always gave one same answer). `items`: by_item's."""
    pairs: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for answers in items.values():
        mine = [a.choice for a in answers if a.annotator == annotator and a.choice in VOTE_SET]
        if not mine:
            continue
        for a in answers:
            if a.annotator != annotator and a.choice in VOTE_SET:
                pairs[a.annotator][0].append(mine[0])
                pairs[a.annotator][1].append(a.choice)
    return {
        other: {"items": len(first), "kappa": cohen_kappa(first, second)}
        for other, (first, second) in sorted(pairs.items())
    }


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two annotators' a/b/tie answers to the same items (None: undefined)."""
    if len(first) < 2:
        return None
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa

    code = {str(c): k for k, c in enumerate(VOTES)}
    table = np.zeros((len(VOTES), len(VOTES)))
    np.add.at(table, ([code[c] for c in first], [code[c] for c in second]), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined (both constant, same answer): NaN, reported as None
        k = cohens_kappa(table, return_results=False)
    return None if math.isnan(k) else float(k)


def krippendorff_alpha(answers: Sequence[ItemAnswer]) -> float | None:
    """Nominal alpha over a/b/tie answers (annotators x items, discards missing); None where undefined (no item
    with two votes, or a single answer value in the whole round)."""
    votes = [a for a in answers if a.choice in VOTE_SET and a.blind]
    per_item: dict[str, int] = defaultdict(int)
    for a in votes:
        per_item[a.item_id] += 1
    if not any(n >= 2 for n in per_item.values()) or len({a.choice for a in votes}) < 2:
        return None
    import krippendorff
    import numpy as np

    people = {p: k for k, p in enumerate(sorted({a.annotator for a in votes}))}
    items = {i: k for k, i in enumerate(sorted(per_item))}
    data = np.full((len(people), len(items)), np.nan)
    code = {str(c): k for k, c in enumerate(VOTES)}
    for a in votes:
        data[people[a.annotator], items[a.item_id]] = code[a.choice]
    value = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    return None if math.isnan(value) else float(value)


def seconds_per_answer(times: Iterable[datetime | None]) -> tuple[float | None, int]:
    """(median gap in seconds between consecutive answers, gaps counted): breaks (> BREAK_S) left out."""
    ordered = sorted(t for t in times if t is not None)
    gaps = [(b - a).total_seconds() for a, b in pairwise(ordered)]
    gaps = [g for g in gaps if g <= BREAK_S]
    return (float(median(gaps)) if gaps else None), len(gaps)


def figures(
    answers: Sequence[ItemAnswer],
    gold: Sequence[GoldRow],
    annotator: str,
    items: Mapping[str, list[ItemAnswer]] | None = None,
) -> Figures:
    """One annotator's figures over `answers` (every annotator's, for the comparisons; `items`: them
    by_item, when the caller has it) and their gold rows."""
    items = by_item(answers) if items is None else items
    own = [a for a in answers if a.annotator == annotator]
    own_gold = [g for g in gold if g.annotator == annotator]
    f = Figures(answers=len(own) + len(own_gold))
    f.gold_correct, f.gold_answers = gold_accuracy(own_gold)
    if f.gold_answers:
        f.gold_accuracy = f.gold_correct / f.gold_answers
        f.gold_interval = wilson(f.gold_correct, f.gold_answers)
    # The comparisons read only the items they answered blind.
    mine = {a.item_id: items[a.item_id] for a in own if a.item_id in items}
    agreed, f.majority_items = majority_agreement(mine, annotator)
    if f.majority_items:
        f.majority_agreement = agreed / f.majority_items
    f.kappa = pairwise_kappa(mine, annotator)
    sides = [chose_shown_a(a.choice, a.swapped) for a in own]
    sides += [chose_shown_a(g.answer, g.shown_swapped) for g in own_gold]
    shown = [s for s in sides if s is not None]
    f.ab_answers, f.shown_a = len(shown), sum(shown)
    if shown:
        f.position_bias = f.shown_a / f.ab_answers
        f.position_interval = wilson(f.shown_a, f.ab_answers)
    choices = [a.choice for a in own] + [g.answer for g in own_gold]
    if choices:
        f.tie_rate = choices.count(Choice.TIE) / len(choices)
        f.discard_rate = choices.count(Choice.DISCARD) / len(choices)
    f.seconds_per_answer, f.timed_gaps = seconds_per_answer(
        [a.answered_at for a in own] + [g.answered_at for g in own_gold]
    )
    return f


def reliability(answers: Sequence[ItemAnswer], gold: Iterable[GoldRow] = ()) -> Reliability:
    """Every annotator's figures, cumulative and per round (a round: its items' answers and its gold rows)."""
    gold = list(gold)
    people = sorted({a.annotator for a in answers} | {g.annotator for g in gold})
    rounds: dict[int, tuple[list[ItemAnswer], list[GoldRow]]] = defaultdict(lambda: ([], []))
    for a in answers:
        rounds[a.round_id][0].append(a)
    for g in gold:
        rounds[g.round_id][1].append(g)
    per_round = {}
    for rid in sorted(rounds):
        ans, gld = rounds[rid]
        who = sorted({a.annotator for a in ans} | {g.annotator for g in gld})
        items = by_item(ans)
        per_round[rid] = RoundReliability(
            {p: figures(ans, gld, p, items) for p in who}, krippendorff_alpha(ans)
        )
    items = by_item(answers)
    return Reliability({p: figures(answers, gold, p, items) for p in people}, per_round)


def as_json(rel: Reliability, round_names: Mapping[int, str]) -> dict:
    """{"annotators": {name: figures}, "rounds": [{"round": name, "alpha": a, "annotators": {...}}]}."""
    return {
        "annotators": {p: f.as_json() for p, f in rel.annotators.items()},
        "rounds": [
            {
                "round": round_names.get(rid, str(rid)),
                "round_id": rid,
                "alpha": r.alpha,
                "annotators": {p: f.as_json() for p, f in r.figures.items()},
            }
            for rid, r in rel.rounds.items()
        ],
    }
