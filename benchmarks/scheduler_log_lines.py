"""Benchmark: how many lines `pvar-loop run` writes to its log for one quick-demo round (issue 14 point 10).

Runs `pvar-loop demo --quick --rounds 1` (tiny random models, a local Argilla stack, the bot annotator, the real
scheduler as a child process logging to <data-dir>/scheduler.log) and counts that log's lines: in all, per
minute of the scheduler's life, and by source (APScheduler, the Argilla SDK's "Logged in", tick lines,
progress-bar redraws, our other loggers). Point PYTHONPATH at another checkout to measure its code.

Usage: HF_HUB_OFFLINE=1 PVAR_LOOP_ARGILLA_VENV=.venv-argilla python benchmarks/scheduler_log_lines.py
    [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ ([A-Z]+) ([\w.]+): (.*)$")


def classify(line: str) -> str:
    m = STAMP.match(line)
    if m is None:
        return "progress bars and other unformatted output"
    logger, msg = m.group(3), m.group(4)
    if logger.startswith("apscheduler"):
        return "apscheduler"
    if "Logged in as" in msg:
        return "argilla sdk login"
    if msg.startswith("tick: "):
        return "tick lines"
    return "pvar-loop (transitions, pulls, summaries)"


def count(log: Path) -> dict:
    lines = log.read_text(errors="replace").splitlines()
    stamps = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") for m in map(STAMP.match, lines) if m]
    minutes = (stamps[-1] - stamps[0]).total_seconds() / 60 if len(stamps) > 1 else 0.0
    return {
        "lines": len(lines),
        "minutes": round(minutes, 2),
        "lines_per_minute": round(len(lines) / minutes, 1) if minutes else None,
        "by_source": dict(Counter(map(classify, lines)).most_common()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="demo data dir (default: a temporary one)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    data = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="log-lines-")) / "demo"
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "loop.cli", "demo", "--quick", "--rounds", "1", "--data-dir", str(data)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        print(r.stdout[-3000:] + r.stderr[-3000:], file=sys.stderr)
        return r.returncode
    result = {"demo_seconds": round(time.perf_counter() - t0, 1), **count(data / "scheduler.log")}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"scheduler.log of one quick-demo round: {result['lines']} lines over {result['minutes']} min "
        f"({result['lines_per_minute']} lines/min); demo took {result['demo_seconds']} s"
    )
    for source, n in result["by_source"].items():
        print(f"  {n:5d}  {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
