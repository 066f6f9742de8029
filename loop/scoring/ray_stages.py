"""Ray Data stages of the scoring pipeline: callable classes (one actor each) around the existing backends.

A dataset row is one prompt with its K sample slots; a batch number column says which committed batch it
belongs to. Every stage handles each batch of rows as one call of the local engine's step (loop.scoring.steps),
so batch-seeded sampling and length-bucketed reward batches see exactly what the local engine sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from loop.ml.generation import Sample
from loop.scoring.steps import (
    ScoredPrompt,
    ScoreReport,
    finish_items,
    generate_missing,
    reward_items,
)
from storage.repositories.prompts import PromptRow

# Columns of a row; list columns have K entries (None / -1 / NaN where a slot is empty).
BATCH, PROMPT_ID, PROMPT = "batch", "prompt_id", "prompt"
TEXTS, N_TOKENS, NEW, REWARDS = "texts", "n_tokens", "new", "rewards"
REASON, PVAR, GAP = "reason", "pvar", "gap"
GENERATE_S, REWARD_S = "generate_s", "reward_s"  # the batch's stage seconds, spread over its rows


def to_rows(
    batch_no: int, batch: Sequence[PromptRow], items: list[ScoredPrompt], k: int
) -> list[dict[str, Any]]:
    """Rows of one batch: its prompts with their K sample slots, rewards and outcome."""
    rows = []
    for p, it in zip(batch, items, strict=True):
        rows.append(
            {
                BATCH: batch_no,
                PROMPT_ID: p.id,
                PROMPT: p.text,
                TEXTS: [it.responses[i].text if i in it.responses else None for i in range(k)],
                N_TOKENS: [it.responses[i].n_tokens if i in it.responses else -1 for i in range(k)],
                NEW: [i in it.new for i in range(k)],
                REWARDS: [it.rewards.get(i, math.nan) for i in range(k)],
                REASON: it.reason,
                PVAR: it.pvar,
                GAP: it.gap,
            }
        )
    return rows


def from_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[PromptRow], list[ScoredPrompt]]:
    """The prompts and items of rows built by to_rows (lists may come back as numpy arrays)."""
    batch, items = [], []
    for row in rows:
        texts, n_tokens, new, rewards = (list(row[c]) for c in (TEXTS, N_TOKENS, NEW, REWARDS))
        responses = {
            i: Sample(t, int(n))
            for i, (t, n) in enumerate(zip(texts, n_tokens, strict=True))
            if t is not None
        }
        batch.append(PromptRow(row[PROMPT_ID], row[PROMPT]))
        reason = row.get(REASON)
        items.append(
            ScoredPrompt(
                prompt_id=row[PROMPT_ID],
                responses=responses,
                new={i for i, flag in enumerate(new) if flag},
                rewards={i: _float(r) for i, r in enumerate(rewards) if not math.isnan(_float(r))},
                reason=reason if isinstance(reason, str) else None,
                pvar=_float(row.get(PVAR)),
                gap=_float(row.get(GAP)),
            )
        )
    return batch, items


def _float(value: Any) -> float:
    """A float column's value; Arrow hands NaN back as None."""
    return math.nan if value is None else float(value)


def _per_batch(df, k: int, step) -> Any:
    """Apply step(batch, items, report) to each batch of the frame's rows; rows keep their order."""
    import pandas as pd

    frames = []
    for _, group in df.groupby(BATCH, sort=False):
        rows = group.to_dict("records")
        batch, items = from_rows(rows)
        report = ScoreReport(checkpoint_id="", reward_model="", k=k)
        step(batch, items, report)
        out = pd.DataFrame(to_rows(int(rows[0][BATCH]), batch, items, k))
        out[GENERATE_S] = [row.get(GENERATE_S, 0.0) + report.generate_s / len(rows) for row in rows]
        out[REWARD_S] = [row.get(REWARD_S, 0.0) + report.reward_s / len(rows) for row in rows]
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


def _limit_threads(cpus: float) -> None:
    # Ray reserves CPUs for scheduling only; torch would still start a thread per core in every actor.
    import torch

    torch.set_num_threads(max(1, round(cpus)))


class GenerateStage:
    """Actor: the configured generation backend (loop.ml.generation) samples what each prompt is missing."""

    def __init__(self, generator_kwargs: dict[str, Any], k: int, seed: int, cpus: float) -> None:
        from loop.ml.generation import make_generator

        _limit_threads(cpus)
        self.k, self.seed = k, seed
        self.generator = make_generator(**generator_kwargs)

    def __call__(self, df):
        def step(batch, items, report):
            generate_missing(batch, items, self.generator, self.k, self.seed, report)

        return _per_batch(df, self.k, step)


class RewardStage:
    """Actor: RewardScorer (loop.ml.rewards) rewards each batch's responses in one call, as the local engine."""

    def __init__(self, scorer_kwargs: dict[str, Any], k: int, cpus: float) -> None:
        from loop.ml.rewards import RewardScorer

        _limit_threads(cpus)
        self.k = k
        self.scorer = RewardScorer(**scorer_kwargs)

    def __call__(self, df):
        def step(batch, items, report):
            reward_items(batch, items, self.scorer, report)

        return _per_batch(df, self.k, step)


def pvar_stage(df, k: int):
    """Task: PVar and reward gap per prompt (or why it has none) from its rewards."""
    return _per_batch(df, k, lambda batch, items, report: finish_items(items, k))


def stage_seconds(rows: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """(generation s, reward s) the stages spent on these rows."""
    return (sum(float(r.get(GENERATE_S, 0.0)) for r in rows), sum(float(r.get(REWARD_S, 0.0)) for r in rows))
