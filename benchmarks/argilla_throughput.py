"""Benchmark: push N annotation items (default 10,000) to a local Argilla stack and pull N responses back.

Starts its own stack (annotation/stack/local_stack.py) and SQLite database in a temp dir, builds N items with
loop.rounds.pairing.create_items, then times:
  push      push_items, batches of 500 (the Argilla maximum)       -> records/s
  bot       an annotator bot answering --bot records (POST /api/v1/me/responses/bulk)  -> responses/s
  answer    the other N - bot responses written with the records bulk endpoint (PUT .../records/bulk with
            `responses`, owner key): set-up for the pull, ~10x faster than the per-user endpoint
  pull      pull_labels reading all N responses, storing N labels   -> responses/s
  re-pull   the same pull again (must change nothing)
Usage: python benchmarks/argilla_throughput.py [--n N] [--bot M] [--batch-size B] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

from annotation.annotators import create_annotator
from annotation.api import connect, request
from annotation.dataset import ensure_dataset, handle_for
from annotation.gateway import fetch_records, pull_labels, push_items
from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import RewardJudge
from annotation.stack.local_stack import start_stack, stop_stack
from loop.rounds.pairing import create_items
from storage.db import UnitOfWork, make_engine
from storage.migrate import upgrade
from storage.models import Checkpoint, Generation, Prompt, RewardScore, Round
from storage.upsert import upsert

K = 3


def build_round(uow: UnitOfWork, n: int) -> int:
    """n prompts x K scored generations and one round with n items; returns the round id."""
    texts = [f"Benchmark prompt {i}: summarise the idea of item {i} in two sentences." for i in range(n)]
    pids = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    with uow() as s:
        upsert(s, Checkpoint, [{"id": "bench-policy", "path": "bench"}])
        upsert(
            s,
            Prompt,
            [
                {"id": p, "text": t, "source": "bench", "split": "train", "meta": {}}
                for p, t in zip(pids, texts, strict=True)
            ],
        )
        gens = [
            {
                "prompt_id": p,
                "checkpoint_id": "bench-policy",
                "sample_index": k,
                "text": f"Response {k} to: {t}",
            }
            for p, t in zip(pids, texts, strict=True)
            for k in range(K)
        ]
        upsert(s, Generation, gens, constraint="uq_generations_sample")
        ids = s.query(Generation.id, Generation.sample_index).all()
        upsert(
            s,
            RewardScore,
            [{"generation_id": g, "reward_model": "bench-rm", "score": float(k)} for g, k in ids],
        )
        rnd = Round(number=1, budget=n, strategy="pvar", seed=0, policy_in="bench-policy")
        s.add(rnd)
        s.flush()
        written, _ = create_items(
            s, round_id=rnd.id, prompt_ids=pids, checkpoint_id="bench-policy", reward_model="bench-rm", seed=0
        )
        assert written == n
        return rnd.id


def answer_in_bulk(client, dataset_id: str, user_id: str, batch: int = 500) -> int:
    """Owner-side bulk answers for every record without a response: set-up for the pull benchmark."""
    records = fetch_records_without_responses(client, dataset_id)
    for start in range(0, len(records), batch):
        items = [
            {
                "id": r["id"],
                "responses": [
                    {"user_id": user_id, "status": "submitted", "values": {"preference": {"value": "a"}}}
                ],
            }
            for r in records[start : start + batch]
        ]
        request(
            client.http_client,
            "PUT",
            f"/api/v1/datasets/{dataset_id}/records/bulk",
            json={"items": items},
            what="answer",
        )
    return len(records)


def fetch_records_without_responses(client, dataset_id: str) -> list[dict]:
    return [r for r in fetch_records(handle_for(client, dataset_id)) if not r.get("responses")]


def report(results: dict, name: str, count: int, unit: str, seconds: float, note: str = "") -> None:
    rate = count / seconds if seconds else 0.0
    results.update({f"{name}_n": count, f"{name}_s": round(seconds, 2), f"{name}_per_s": round(rate, 1)})
    print(f"{name + ':':<8} {count:>7,} {unit} in {seconds:6.1f} s = {rate:8,.1f} {unit}/s {note}".rstrip())


def run(args: argparse.Namespace, root: Path, results: dict) -> None:
    t0 = time.perf_counter()
    info = start_stack(root / "stack")
    results["stack_start_s"] = round(time.perf_counter() - t0, 1)
    engine = make_engine(f"sqlite:///{root / 'bench.db'}")
    upgrade(engine)
    uow = UnitOfWork(engine)
    round_id = build_round(uow, args.n)
    client = connect(info.url, info.api_key)
    dataset = ensure_dataset(client, "bench", info.workspace, min_submitted=1)

    pushed = push_items(uow, dataset, round_id, batch_size=args.batch_size)
    assert pushed.pushed == args.n, pushed
    report(results, "push", pushed.pushed, "records", pushed.seconds, f"(batches of {args.batch_size})")

    who = create_annotator(client.http_client, "bench-bot", info.workspace)
    judge = RewardJudge(lambda _p, r: float(r.split()[1]), seed=0)
    with AnnotatorBot(info.url, who.api_key, judge) as bot:
        answered = bot.run(dataset.id, limit=min(args.bot, args.n))
    assert answered.submitted == min(args.bot, args.n) and not answered.errors, answered
    if answered.submitted:
        report(results, "bot", answered.submitted, "responses", answered.seconds, "(/me/responses/bulk)")
    t0 = time.perf_counter()
    written = answer_in_bulk(client, dataset.id, who.user_id)
    assert written == args.n - answered.submitted, written
    if written:
        report(results, "answer", written, "responses", time.perf_counter() - t0, "(records bulk, set-up)")

    pulled = pull_labels(uow, dataset, round_id)
    assert pulled.new_labels == args.n and not pulled.skipped, pulled
    report(results, "pull", pulled.responses, "responses", pulled.seconds, "(-> labels + decisions)")
    again = pull_labels(uow, dataset, round_id)
    assert not again.changed
    report(results, "re-pull", again.responses, "responses", again.seconds, "(no change)")
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="items to push and responses to pull")
    ap.add_argument("--bot", type=int, default=200, help="of those, responses the annotator bot submits")
    ap.add_argument("--batch-size", type=int, default=500, help="records per push request (max 500)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results: dict = {"n": args.n}
    with tempfile.TemporaryDirectory(prefix="pvar-argilla-bench-") as tmp:
        try:
            run(args, Path(tmp), results)
        finally:
            stop_stack(Path(tmp) / "stack", purge=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
