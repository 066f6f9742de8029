"""Pairing: a round's selected prompts become annotation items, the highest- vs lowest-reward response of the
policy's samples (the UltraFeedback-binarised convention), with a seeded, recorded choice of which one Argilla
shows as "A"."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Sequence

from sqlalchemy.orm import Session

from storage.models import Generation
from storage.repositories.items import add_items
from storage.repositories.project_secrets import keyed_id, record_secret
from storage.repositories.scores import scored_generations
from storage.statuses import ItemStatus


def item_id(secret: str, round_id: int, prompt_id: str, text_a: str, text_b: str) -> str:
    """Keyed hash of round, prompt and pair: re-running a round's planning gives the same ids (and Argilla
    records); a later round that picks the same prompt again (e.g. after a cancel) gets a new record. The
    project's secret keeps annotators from hashing a record's texts in both orders to learn which one the
    reward model ranks higher (the id is the record's external id)."""
    return keyed_id(secret, "item", str(round_id), prompt_id, text_a, text_b)


def swap_flag(seed: int, item: str) -> bool:
    """Position randomisation that is reproducible from (seed, item) and independent of the pair's content."""
    return hashlib.sha256(f"{seed}:{item}".encode()).digest()[0] & 1 == 1


def best_and_worst(session: Session, prompt_ids: Sequence[str], checkpoint_id: str, reward_model: str):
    """prompt_id -> (best Generation, worst Generation); prompts whose samples all tie are left out."""
    rows = scored_generations(session, prompt_ids, checkpoint_id, reward_model)
    by_prompt: dict[str, list[tuple[Generation, float]]] = defaultdict(list)
    for gen, score in rows:
        by_prompt[gen.prompt_id].append((gen, score))
    out = {}
    for pid, scored in by_prompt.items():
        best = max(scored, key=lambda gs: gs[1])  # first of equals: lowest sample index
        worst = min(scored, key=lambda gs: gs[1])
        if best[0].id != worst[0].id and best[0].text != worst[0].text:
            out[pid] = (best[0], worst[0])
    return out


def create_items(
    session: Session,
    *,
    round_id: int,
    prompt_ids: Sequence[str],
    checkpoint_id: str,
    reward_model: str,
    seed: int,
    audit: Collection[str] = (),
) -> tuple[int, list[str]]:
    """Insert one item per selected prompt (idempotent), flagged `audit` for the prompts in `audit` (the
    random audit slice). Returns (items written, prompts skipped as ties)."""
    pairs = best_and_worst(session, prompt_ids, checkpoint_id, reward_model)
    secret = record_secret(session)
    rows = []
    for pid in prompt_ids:
        if pid not in pairs:
            continue
        best, worst = pairs[pid]
        iid = item_id(secret, round_id, pid, best.text, worst.text)
        rows.append(
            {
                "id": iid,
                "round_id": round_id,
                "prompt_id": pid,
                "generation_a_id": best.id,
                "generation_b_id": worst.id,
                "swapped": swap_flag(seed, iid),
                "audit": pid in audit,
                "status": ItemStatus.PENDING,
                "votes": {},
            }
        )
    add_items(session, rows)
    return len(rows), [p for p in prompt_ids if p not in pairs]
