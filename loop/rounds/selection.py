"""Pick a round's prompts: the free scored pool of one (checkpoint, reward model) ranked by a strategy, plus
(pvar rounds) an audit slice drawn at random from the prompts the strategy left, to check PVar's value live.

Reads only; the round runner records the choice, `pvar-loop select` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from loop.acquisition.audit import audit_count, draw_audit
from loop.acquisition.strategies import STRATEGIES, CandidateScores, Strategy, select
from storage.errors import PvarLoopError
from storage.repositories.candidates import candidate_scores, count_scored, scored_pairs
from storage.repositories.prompts import count_unscored, prompt_texts, source_ids
from storage.statuses import PRODUCTION_ARM


class SelectionError(PvarLoopError, ValueError):
    """Nothing to select from (no scores for the checkpoint/reward model), with what to do about it."""


@dataclass(frozen=True)
class Pick:
    rank: int
    prompt_id: str
    pvar: float
    reward_gap: float
    text: str
    audit: bool = False  # drawn at random from the prompts the strategy did not pick
    source_id: str | None = None  # the prompt's id in the operator's data (set at ingest)


@dataclass(frozen=True)
class Selection:
    strategy: Strategy
    budget: int
    seed: int
    checkpoint_id: str
    reward_model: str
    pool: int  # scored prompts still free to pick
    taken: int  # scored prompts held by open rounds or already labelled
    unscored: int  # train prompts without a score for this checkpoint and reward model
    picks: list[Pick]
    audit_fraction: float = 0.0

    @property
    def audits(self) -> int:
        return sum(p.audit for p in self.picks)

    @property
    def shortfall(self) -> int:
        """How many labels the budget asks for beyond what the pool holds (0 when it fits)."""
        return max(self.budget - self.pool, 0) if STRATEGIES[self.strategy].uses_k else 0

    def as_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "budget": self.budget,
            "seed": self.seed,
            "checkpoint": self.checkpoint_id,
            "reward_model": self.reward_model,
            "pool": self.pool,
            "taken": self.taken,
            "unscored": self.unscored,
            "shortfall": self.shortfall,
            "audit_fraction": self.audit_fraction,
            "audits": self.audits,
            "selected": [p.__dict__ for p in self.picks],
        }


def choose(
    session: Session,
    *,
    checkpoint_id: str,
    reward_model: str,
    strategy: Strategy | str,
    budget: int,
    seed: int,
    arm: str = PRODUCTION_ARM,
    audit_fraction: float = 0.0,
    among_round: int | None = None,
) -> Selection:
    """Rank the scored pool still free for `arm` with `strategy` and keep the best `budget` (all for 'full').

    With the pvar strategy, audit_count(budget, audit_fraction) of the budget are instead drawn uniformly (same
    seeded Generator) from the pool the top slice left; they come last, marked audit=True. With among_round,
    only that round's drawn candidates (loop.rounds.candidates) are the pool."""
    if strategy not in STRATEGIES:
        raise SelectionError(f"unknown strategy {strategy!r}; allowed: {', '.join(Strategy)}")
    strategy = Strategy(strategy)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise SelectionError(f"budget must be a non-negative integer, got {budget!r}")
    rows = candidate_scores(session, checkpoint_id, reward_model, arm, round_id=among_round)
    scored = count_scored(session, checkpoint_id, reward_model)
    if scored == 0:
        raise SelectionError(_no_scores_message(session, checkpoint_id, reward_model))
    picks: list[Pick] = []
    if rows:
        known = all(r.disagree is not None for r in rows)  # all or nothing: stored per scored pool
        candidates = CandidateScores(
            np.array([r.prompt_id for r in rows]),
            np.array([r.pvar for r in rows]),
            np.array([r.reward_gap for r in rows]),
            np.array([r.disagree > 0 for r in rows]) if known else None,
        )
        rng = np.random.default_rng(seed)
        n_audit = audit_count(budget, audit_fraction) if strategy == Strategy.PVAR else 0
        order = select(strategy, candidates, budget - n_audit, rng)
        audit = draw_audit(len(rows), order, n_audit, rng)
        chosen = [(rows[i], False) for i in order.tolist()] + [(rows[i], True) for i in audit.tolist()]
        texts = prompt_texts(session, [r.prompt_id for r, _ in chosen])
        sources = source_ids(session, [r.prompt_id for r, _ in chosen])
        picks = [
            Pick(rank, r.prompt_id, r.pvar, r.reward_gap, texts[r.prompt_id], is_audit, sources[r.prompt_id])
            for rank, (r, is_audit) in enumerate(chosen, start=1)
        ]
    return Selection(
        strategy=strategy,
        budget=budget,
        seed=seed,
        checkpoint_id=checkpoint_id,
        reward_model=reward_model,
        pool=len(rows),
        taken=scored - len(rows),
        unscored=count_unscored(session, checkpoint_id, reward_model),
        picks=picks,
        audit_fraction=audit_fraction if strategy == Strategy.PVAR else 0.0,
    )


def _no_scores_message(session: Session, checkpoint_id: str, reward_model: str) -> str:
    msg = f"no PVar scores for checkpoint {checkpoint_id!r} with reward model {reward_model!r}"
    others = scored_pairs(session)
    if others:
        listed = "; ".join(f"{c} / {r} ({n} prompts)" for c, r, n in others[:5])
        return f"{msg}. Scores exist for: {listed}. Run `pvar-loop score` or check policy.model/reward.model"
    return f"{msg}: run `pvar-loop score` first"
