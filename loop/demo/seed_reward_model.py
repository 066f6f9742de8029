"""Bootstrap the learned selection reward model before round 1, from a seed pool disjoint from the loop's pool.

PVar needs a reward model, and the demo world's rule verifier must not be it (that would be selecting with
the gold). So: the policy samples K responses per seed prompt, the annotator compares every pair of distinct ones (one
ranking task per prompt; here the judgement the annotator bot applies in Argilla, called in-process), and a
reward model is trained on the decided pairs with TRL's RewardTrainer (loop.ml.reward_model). Ties carry no
preference and are dropped: on a policy this small most single pairs tie, so one pair per prompt would leave
too few labels to learn from.
Later refreshes use `pvar-loop reward-model train` on the labels the loop has collected.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loop.config import GenerationConfig, PolicyConfig, RunDtype, check_settings, setting
from loop.ml.dpo import PreferencePair
from storage.errors import PvarLoopError
from storage.statuses import Choice

log = logging.getLogger(__name__)

Annotate = Callable[[str, str, str], str]  # (prompt, a, b) -> "a" | "b" | "tie"


class SeedPoolError(PvarLoopError, ValueError):
    """The seed pool file is unusable; the message names the file and line."""


@dataclass(frozen=True)
class SeedLabels:
    pairs: list[PreferencePair]
    prompts: int
    comparisons: int
    ties: int
    identical: int  # prompts whose K samples were all the same text: nothing to compare


@dataclass(frozen=True)
class SampleSettings:
    """How the policy samples the seed pool: the [generation] keys (and [policy] dtype) with their defaults and
    validation; the demo passes its own k, max_new_tokens and dtype."""

    k: int = setting(GenerationConfig, "k")
    temperature: float = setting(GenerationConfig, "temperature")
    top_p: float = setting(GenerationConfig, "top_p")
    max_new_tokens: int = setting(GenerationConfig, "max_new_tokens")
    batch_size: int = setting(GenerationConfig, "batch_size")
    dtype: RunDtype = setting(PolicyConfig, "dtype")
    seed: int = setting(GenerationConfig, "seed")
    backend: str = setting(GenerationConfig, "backend")

    def __post_init__(self) -> None:
        check_settings(self)


def read_seed_prompts(path: Path) -> list[dict]:
    """Rows {"prompt": str, "metadata": {...}} of a JSONL seed pool (the demo world's seed.jsonl), read like
    `pvar-loop ingest` reads JSONL; the first bad line is an error naming the file and line."""
    from loop.ingest import Reject, read_jsonl

    rows = []
    for where, row in read_jsonl(path):
        if isinstance(row, Reject):
            raise SeedPoolError(f"{path}: {where}: {row.reason}")
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise SeedPoolError(f'{path}: {where}: expected a non-empty "prompt" string')
        rows.append(row)
    if not rows:
        raise SeedPoolError(f"{path}: no seed prompts")
    return rows


def label_seed_pool(
    prompts: list[str],
    policy: str,
    annotate: Annotate,
    settings: SampleSettings,
) -> SeedLabels:
    """Sample K responses per prompt; the annotator compares each pair of distinct ones (sides in seeded random
    order); keep the decided pairs."""
    from loop.ml.generation import make_generator

    s = settings
    generator = make_generator(
        s.backend,
        model=policy,
        dtype=s.dtype,
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=s.max_new_tokens,
        batch_size=s.batch_size,
    )
    try:
        samples = generator.generate(prompts, k=s.k, seed=s.seed)
    finally:
        generator.close()
    rng = np.random.default_rng(s.seed)
    pairs, comparisons, ties, identical = [], 0, 0, 0
    for prompt, drawn in zip(prompts, samples, strict=True):
        distinct = list(dict.fromkeys(x.text for x in drawn))  # keeps draw order: reproducible pairs
        if len(distinct) < 2:
            identical += 1
            continue
        for a, b in itertools.combinations(distinct, 2):
            if rng.random() < 0.5:
                a, b = b, a
            comparisons += 1
            answer = annotate(prompt, a, b)
            if answer == Choice.TIE:
                ties += 1
            elif answer in Choice.preferring():
                chosen, rejected = (a, b) if answer == Choice.A else (b, a)
                pairs.append(PreferencePair(prompt, chosen, rejected))
            else:
                raise ValueError(f"annotator answered {answer!r}; expected 'a', 'b' or 'tie'")
    return SeedLabels(pairs, prompts=len(prompts), comparisons=comparisons, ties=ties, identical=identical)


def write_labels(labels: SeedLabels, path: Path) -> None:
    """The decided seed pairs as JSONL (written to a temp file, then renamed: never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        "".join(
            json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
            for p in labels.pairs
        ),
        encoding="utf-8",
    )
    os.replace(tmp, path)


def bootstrap_reward_model(
    seed_file: Path,
    *,
    policy: str,
    base: str,
    out_dir: Path,
    annotate: Annotate,
    gold: Callable[[str, str], float | None] | None,
    sampling: SampleSettings,
    training,
):
    """Label the seed pool and train the selection reward model into out_dir. Returns (SeedLabels, result).

    `gold` (the verifier) only measures agreement on held-out pairs; it never trains or selects."""
    from loop.ml.reward_model import train_reward_model

    rows = read_seed_prompts(seed_file)
    t0 = time.perf_counter()
    labels = label_seed_pool([r["prompt"] for r in rows], policy, annotate, sampling)
    log.info(
        "seed pool %s: %d prompts, %d comparisons -> %d decided pairs (%d ties, %d all-identical) in %.0f s",
        seed_file,
        labels.prompts,
        labels.comparisons,
        len(labels.pairs),
        labels.ties,
        labels.identical,
        time.perf_counter() - t0,
    )
    if not labels.pairs:
        raise SeedPoolError(
            f"{seed_file}: the annotator decided no seed pair (all ties or identical samples)"
        )
    write_labels(labels, out_dir.parent / f"{out_dir.name}-seed-labels.jsonl")
    result = train_reward_model(
        labels.pairs, base_dir=base, output_dir=out_dir, settings=training, judge=gold
    )
    return labels, result
