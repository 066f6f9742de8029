"""Rows for annotation tests: prompts, a checkpoint, K=3 scored generations per prompt, a round, and its items
built by the real loop.rounds.pairing.create_items (best vs worst reward, seeded swap)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select

from loop.rounds.pairing import create_items
from storage.models import AnnotationItem, Checkpoint, Generation, Prompt, PromptScore, RewardScore, Round
from storage.statuses import PRODUCTION_ARM, RoundStatus
from storage.upsert import upsert

REWARD_MODEL = "test-rm"
CHECKPOINT = "policy-0"


@dataclass(frozen=True)
class RoundItems:
    round_id: int
    round_number: int
    item_ids: list[str]  # sorted
    prompts: dict[str, str]  # item id -> prompt text
    best: dict[str, str]  # item id -> text of generation_a (highest reward)
    worst: dict[str, str]  # item id -> text of generation_b
    swapped: dict[str, bool]


def prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_round_items(
    uow,
    n: int,
    *,
    round_number: int = 1,
    seed: int = 0,
    strategy: str = "pvar",
    tag: str = "",
    status: RoundStatus = RoundStatus.PLANNED,
    arm: str = PRODUCTION_ARM,
) -> RoundItems:
    """Insert n prompts with 3 generations each (rewards 0.1*i + {0, 1, 2}) and a round with n items, in
    `status` (COLLECTING for a round the CLI pushes by hand: a planned round has nothing to push yet)."""
    texts = [f"{tag}Question {round_number}.{i}: explain topic {i} briefly." for i in range(n)]
    pids = [prompt_id(t) for t in texts]
    with uow() as s:
        upsert(s, Checkpoint, [{"id": CHECKPOINT, "path": "tiny"}], constraint=None)
        upsert(
            s,
            Prompt,
            [
                {"id": p, "text": t, "source": "test", "split": "train", "meta": {}}
                for p, t in zip(pids, texts, strict=True)
            ],
        )
        rnd = Round(
            arm=arm,
            number=round_number,
            budget=n,
            strategy=strategy,
            seed=seed,
            policy_in=CHECKPOINT,
            status=status,
        )
        s.add(rnd)
        s.flush()
        gens = [
            Generation(prompt_id=p, checkpoint_id=CHECKPOINT, sample_index=k, text=f"answer {k} to <{t}>")
            for p, t in zip(pids, texts, strict=True)
            for k in range(3)
        ]
        s.add_all(gens)
        s.flush()
        s.add_all(
            RewardScore(generation_id=g.id, reward_model=REWARD_MODEL, score=0.1 * i + g.sample_index)
            for i, g in enumerate(gens)
        )
        s.add_all(
            PromptScore(
                prompt_id=p,
                checkpoint_id=CHECKPOINT,
                reward_model=REWARD_MODEL,
                metric="pvar",
                k=3,
                value=0.5 + i,
            )
            for i, p in enumerate(pids)
        )
        s.flush()
        written, ties = create_items(
            s,
            round_id=rnd.id,
            prompt_ids=pids,
            checkpoint_id=CHECKPOINT,
            reward_model=REWARD_MODEL,
            seed=seed,
        )
        assert written == n and not ties
        round_id = rnd.id
    with uow() as s:
        # Only the columns this needs: migration tests call it on older schemas, before later columns exist.
        columns = (
            AnnotationItem.id,
            AnnotationItem.prompt_id,
            AnnotationItem.generation_a_id,
            AnnotationItem.generation_b_id,
            AnnotationItem.swapped,
        )
        items = s.execute(
            select(*columns).where(AnnotationItem.round_id == round_id).order_by(AnnotationItem.id)
        ).all()
        gen_text = {g.id: g.text for g in s.query(Generation)}
        prompt_text = dict(zip(pids, texts, strict=True))
        return RoundItems(
            round_id=round_id,
            round_number=round_number,
            item_ids=[i.id for i in items],
            prompts={i.id: prompt_text[i.prompt_id] for i in items},
            best={i.id: gen_text[i.generation_a_id] for i in items},
            worst={i.id: gen_text[i.generation_b_id] for i in items},
            swapped={i.id: i.swapped for i in items},
        )
