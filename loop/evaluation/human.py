"""The win rate of a human evaluation from the annotators' answers. Pure.

Each comparison's answers (annotator -> policy | reference | tie | discard, the side swap already undone)
give one per-prompt outcome: the mean vote, policy 1, tie 0.5, reference 0 (with one annotator per record:
win, tie or loss). Discards do not vote; a prompt whose answers are all discards is left out of n. The
interval is the percentile bootstrap over prompts, as for the other judges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from annotation.aggregate import DecisionStatus, decide
from loop.evaluation.win_rate import WinRate, outcome_win_rate
from storage.statuses import Verdict

HUMAN = "human"  # Evaluation.judge of a human evaluation
_SCORE = {Verdict.POLICY: 1.0, Verdict.TIE: 0.5, Verdict.REFERENCE: 0.0}


@dataclass(frozen=True)
class Compared:
    """What a comparison contributes: its prompt, the side the policy was shown on, and the answers."""

    prompt_id: str
    policy_side: str
    answers: Mapping[str, str]
    min_submitted: int


def outcome(answers: Mapping[str, str]) -> float | None:
    """The prompt's mean vote in [0, 1]; None when nobody voted (no answers, or only discards)."""
    votes = [_SCORE[v] for v in answers.values() if v in _SCORE]
    return sum(votes) / len(votes) if votes else None


def settled(c: Compared) -> bool:
    """Answered by the overlap it needs (discards count as answers, as for labels)."""
    votes = [Verdict(v).choice for v in c.answers.values()]
    return decide(votes, c.min_submitted).status is not DecisionStatus.WAITING


def human_win_rate(comparisons: Sequence[Compared], *, n_bootstrap: int, seed: int) -> tuple[WinRate, dict]:
    """(win rate with its interval, details for Evaluation.details: votes per prompt and totals). No vote at
    all gives the uninformative 0.5 [0, 1] with n = 0."""
    per_prompt: list[dict[str, Any]] = []
    outcomes: list[float] = []
    totals: Counter[str] = Counter()
    for c in comparisons:
        votes = Counter(c.answers.values())
        totals.update(votes)
        o = outcome(c.answers)
        if o is not None:
            outcomes.append(o)
        per_prompt.append(
            {"prompt_id": c.prompt_id, "policy_side": c.policy_side, "votes": dict(votes), "outcome": o}
        )
    rate = (
        outcome_win_rate(outcomes, n_bootstrap=n_bootstrap, seed=seed)
        if outcomes
        else WinRate(value=0.5, ci_low=0.0, ci_high=1.0, n=0)
    )
    details = {
        "votes": dict(totals),
        "comparisons": len(comparisons),
        "annotators": sorted({a for c in comparisons for a in c.answers}),
        "per_prompt": per_prompt,
    }
    return rate, details
