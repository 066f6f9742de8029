"""The offline demo world: short-answer prompts with checkable constraints, generated from a seed.

Settings follow the pilot in shared notes (demo-world.md): "very short answer" framing so 64 tokens rarely
truncate, 1-2 constraints per prompt, constraint kinds the 135M policy passes
sometimes (neither never nor always).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from loop.evaluation.verifier import instruction

TOPICS = [
    "the ocean",
    "volcanoes",
    "honey bees",
    "the moon",
    "coffee",
    "bicycles",
    "rainbows",
    "libraries",
    "chess",
    "penguins",
    "thunderstorms",
    "bread",
    "trains",
    "deserts",
    "owls",
    "music",
    "gardens",
    "glaciers",
    "kites",
    "lighthouses",
    "tea",
    "robots",
    "mountains",
    "rivers",
    "snow",
    "the sun",
    "forests",
    "cats",
    "maps",
    "clocks",
]
KEYWORDS = ["important", "bright", "simple", "quiet", "ancient"]


def _constraint(kind: str, rng: np.random.Generator) -> dict[str, Any]:
    if kind == "max_words":
        return {"kind": kind, "n": int(rng.choice([15, 25, 35]))}
    if kind in ("keyword", "word_twice"):
        return {"kind": kind, "word": str(rng.choice(KEYWORDS))}
    if kind == "no_letter":
        return {"kind": kind, "letter": str(rng.choice(["y", "k", "w"]))}
    if kind == "numbers":
        return {"kind": kind, "n": int(rng.choice([2, 3]))}
    if kind == "start_word":
        return {"kind": kind, "word": str(rng.choice(["Yes", "Today", "Imagine"]))}
    if kind == "no_word":
        return {"kind": kind, "word": "the"}
    return {"kind": kind}


KINDS = [
    "max_words",
    "keyword",
    "no_letter",
    "numbers",
    "start_word",
    "no_word",
    "title",
    "no_commas",
    "word_twice",
]


def make_prompt(rng: np.random.Generator) -> dict[str, Any]:
    topic = str(rng.choice(TOPICS))
    kinds = rng.choice(KINDS, size=int(rng.integers(1, 3)), replace=False)
    constraints = [_constraint(str(k), rng) for k in kinds]
    text = f"Write a very short answer (one or two sentences) about {topic}. " + " ".join(
        instruction(c) for c in constraints
    )
    return {"prompt": text, "metadata": {"topic": topic, "constraints": constraints}}


def write_demo_prompts(
    directory: Path, *, n_train: int, n_eval: int, seed: int = 0, n_seed: int = 0
) -> tuple[Path, ...]:
    """Write train.jsonl and eval.jsonl (and seed.jsonl when n_seed > 0), all prompts distinct across files.

    The seed pool trains the selection reward model before round 1, so it must not overlap the pool the loop
    selects from nor the eval split. Returns the paths in that order (train, eval[, seed])."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    while len(rows) < n_train + n_eval + n_seed:
        row = make_prompt(rng)
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            rows.append(row)
    directory.mkdir(parents=True, exist_ok=True)
    names = ["train.jsonl", "eval.jsonl"] + (["seed.jsonl"] if n_seed else [])
    bounds = [0, n_train, n_train + n_eval, n_train + n_eval + n_seed]
    paths = tuple(directory / name for name in names)
    for i, path in enumerate(paths):
        part = rows[bounds[i] : bounds[i + 1]]
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return paths
