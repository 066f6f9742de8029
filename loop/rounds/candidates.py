"""A round's candidate set: `[selection] candidates` prompts drawn uniformly (seeded by the round) from the pool
its arm may still take. Only these are scored under the round's policy and only these can be selected, so a
round's scoring cost follows that number, not the pool's size.

The draw is stored (round_scoring, round_candidates) before any scoring, in one transaction: a scoring step
killed and resumed scores the same set, never a second draw. The scoring engine takes the ids this returns
(loop.scoring.pool.score_pool's prompt_ids), whatever engine it is.
"""

from __future__ import annotations

import logging

import numpy as np

from loop.config import Config
from storage.db import UnitOfWork
from storage.models import Round
from storage.repositories.candidates import (
    count_free_prompts,
    free_prompt_ids_at,
    record_candidates,
    round_candidate_ids,
    round_scoring,
)

log = logging.getLogger(__name__)

# Mixed into the round seed so the candidate draw and the selection's own Generator are independent streams.
CANDIDATE_STREAM = 0x43414E44


def candidate_prompt_ids(cfg: Config, uow: UnitOfWork, round_id: int) -> list[str] | None:
    """The prompt ids round `round_id` scores and selects from, drawn on the first call and read back on the
    next ones; None: the whole pool (`[selection] candidates = 0`, or a round that drew nothing before)."""
    with uow() as session:
        rnd = session.get(Round, round_id)
        recorded = round_scoring(session, round_id)
        # An empty draw (the pool was exhausted) is drawn again: prompts may have been ingested since.
        if recorded is not None and recorded.drawn != 0:
            return None if recorded.candidates is None else round_candidate_ids(session, round_id)
        asked = cfg.selection.candidate_count(rnd.budget)
        free = count_free_prompts(session, rnd.arm)
        ids = [] if asked is None else draw(session, free, asked, rnd.seed, rnd.arm)
        record_candidates(session, round_id, asked=asked, free_pool=free, prompt_ids=ids)
    # DEBUG: the round's scoring summary (INFO, loop.rounds.steps) says how many candidates it scored.
    if asked is None:
        log.debug("round %s/%s: scoring the whole free pool (%d prompts)", rnd.arm, rnd.number, free)
        return None
    log.debug(
        "round %s/%s: %d candidates drawn from %d free prompts ([selection] candidates = %s)",
        rnd.arm,
        rnd.number,
        len(ids),
        free,
        cfg.selection.candidates,
    )
    return ids


POOL_EXHAUSTED = "the pool is exhausted: ingest prompts (`pvar-loop ingest FILE`)"


def pool_exhausted(session, arm: str) -> bool:
    """No train prompt left that the arm may take: a round has nothing to draw, score or select."""
    return count_free_prompts(session, arm) == 0


def draw(session, free: int, asked: int, seed: int, arm: str) -> list[str]:
    """`asked` of the `free` prompts, uniformly without replacement; all of them when the pool is smaller."""
    rng = np.random.default_rng([CANDIDATE_STREAM, seed % 2**64])  # SeedSequence takes no negative seed
    if asked >= free:
        positions = range(free)
    else:
        positions = np.sort(rng.choice(free, size=asked, replace=False)).tolist()
    return free_prompt_ids_at(session, list(positions), arm)


def selection_round(session, round_id: int) -> int | None:
    """The round id to restrict selection to (its drawn candidates), or None to select from the whole pool."""
    recorded = round_scoring(session, round_id)
    return round_id if recorded is not None and recorded.candidates is not None else None
