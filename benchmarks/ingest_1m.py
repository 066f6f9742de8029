"""Benchmark: ingest N generated prompts (default 1,000,000) into a fresh SQLite database.

Prints rows/s, peak RSS and the database size. Target (2-core machine): under 60 s and under 1 GiB.
Usage: python benchmarks/ingest_1m.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from loop.ingest import ingest_file
from storage.db import UnitOfWork, make_engine
from storage.migrate import upgrade

TOPICS = ["rain", "DPO", "prime numbers", "the moon", "tea", "graphs", "rivers", "jazz", "Rust", "bees"]


def write_prompts(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)]
            fh.write(
                json.dumps(
                    {
                        "prompt": f"Write two sentences about {topic}, variant {i}.",
                        "id": i,
                        "metadata": {"topic": topic},
                    }
                )
                + "\n"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pvar-bench-") as tmp:
        src, db = Path(tmp) / "prompts.jsonl", Path(tmp) / "bench.db"
        write_prompts(src, args.rows)
        engine = make_engine(f"sqlite:///{db}")
        upgrade(engine)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        with UnitOfWork(engine)() as session:
            report = ingest_file(session, src)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        engine.dispose()
        size = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*"))
    print(f"rows: {report.inserted:,} inserted of {report.read:,} read")
    print(f"time: {seconds:.1f} s  ({report.inserted / seconds:,.0f} rows/s)")
    print(f"peak RSS: {peak / 1024:.0f} MiB (before ingest {rss_before / 1024:.0f} MiB)")
    print(f"database size: {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
