"""The order annotators label a round in: the strategy's ranking (rank 1 first), so that when a budget is cut
the most valuable items are the ones labelled, with the audit slice at seeded random places in it.

The ranking is rebuilt from the scores the round selected on (the strategies rank by score, highest first;
random ones by a seeded draw). Audit picks must not stand out: they are not last, and not first, but spread
uniformly over the queue, so neither an item's priority nor its place in the queue tells the slices apart.
"""

from __future__ import annotations

import numpy as np

from loop.acquisition.strategies import Strategy
from storage.repositories.items import ItemScores

_BY_SCORE = {
    Strategy.PVAR: lambda s: s.pvar,
    Strategy.LOW_PVAR: lambda s: None if s.pvar is None else -s.pvar,
    Strategy.REWARD_GAP: lambda s: s.reward_gap,
}


def priority_order(strategy: str, items: list[ItemScores], seed: int) -> list[str]:
    """Item ids, first to label first: picks by the strategy's score (ties and missing scores by id, after
    the scored ones; random strategies in a seeded order), audit picks inserted at seeded random places."""
    rng = np.random.default_rng([seed, 14])  # its own stream: the round's selection draws stay as they were
    picks = sorted((s for s in items if not s.audit), key=lambda s: s.id)
    audit = sorted((s for s in items if s.audit), key=lambda s: s.id)
    score = _BY_SCORE.get(strategy)  # Strategy is a StrEnum: its members are found by their strings
    if score is None:
        picks = [picks[i] for i in rng.permutation(len(picks))]
    else:
        picks.sort(key=lambda s: (score(s) is None, -(score(s) or 0.0)))
    order = [s.id for s in picks]
    audit_ids = [audit[i].id for i in rng.permutation(len(audit))]
    # Each audit pick goes to a uniformly random slot of the final queue (positions drawn without replacement).
    slots = set(rng.choice(len(order) + len(audit_ids), size=len(audit_ids), replace=False).tolist())
    out, a, p = [], iter(audit_ids), iter(order)
    for pos in range(len(order) + len(audit_ids)):
        out.append(next(a) if pos in slots else next(p))
    return out
