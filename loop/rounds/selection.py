"""Pick a round's prompts: the free scored pool of one (checkpoint, reward model) ranked by a strategy.

Reads only; the round runner records the choice, `pvar-loop select` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from loop.acquisition.strategies import STRATEGIES, CandidateScores, Strategy, select
from storage.errors import PvarLoopError
from storage.repositories.candidates import candidate_scores, count_scored, scored_pairs
from storage.repositories.prompts import count_unscored, prompt_texts


class SelectionError(PvarLoopError, ValueError):
    """Nothing to select from (no scores for the checkpoint/reward model), with what to do about it."""


@dataclass(frozen=True)
class Pick:
    rank: int
    prompt_id: str
    pvar: float
    reward_gap: float
    text: str


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
    arm: str = "main",
) -> Selection:
    """Rank the scored pool still free for `arm` with `strategy` and keep the best `budget` (all for 'full')."""
    if strategy not in STRATEGIES:
        raise SelectionError(f"unknown strategy {strategy!r}; allowed: {', '.join(Strategy)}")
    strategy = Strategy(strategy)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise SelectionError(f"budget must be a non-negative integer, got {budget!r}")
    rows = candidate_scores(session, checkpoint_id, reward_model, arm)
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
        order = select(strategy, candidates, budget, np.random.default_rng(seed))
        chosen = [rows[i] for i in order.tolist()]
        texts = prompt_texts(session, [r.prompt_id for r in chosen])
        picks = [
            Pick(rank, r.prompt_id, r.pvar, r.reward_gap, texts[r.prompt_id])
            for rank, r in enumerate(chosen, start=1)
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
    )


def _no_scores_message(session: Session, checkpoint_id: str, reward_model: str) -> str:
    msg = f"no PVar scores for checkpoint {checkpoint_id!r} with reward model {reward_model!r}"
    others = scored_pairs(session)
    if others:
        listed = "; ".join(f"{c} / {r} ({n} prompts)" for c, r, n in others[:5])
        return f"{msg}. Scores exist for: {listed}. Run `pvar-loop score` or check policy.model/reward.model"
    return f"{msg}: run `pvar-loop score` first"
