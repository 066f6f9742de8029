"""A throwaway pvar-loop project (config, migrated SQLite DB, ingested prompts) for scoring tests."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loop.cli.app import main

TOPICS = ["lists", "tuples", "sets", "files", "loops", "classes", "strings", "numbers", "dicts", "modules"]
# Runs the console script's main() in a child process.
CLI = "import sys; from loop.cli.app import main; sys.exit(main(sys.argv[1:]))"


def prompts(n: int) -> list[str]:
    return [f"Question {i}: how do {TOPICS[i % len(TOPICS)]} work in Python?" for i in range(n)]


@dataclass
class Project:
    root: Path
    config: Path
    db: Path

    def cli(self, *args: str) -> int:
        return main(["--config", str(self.config), *args])

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", CLI, "--config", str(self.config), *args],
            cwd=self.root,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def query(self, sql: str, *params) -> list[tuple]:
        """Read-only look at the database, from a connection of its own (works while a scorer writes)."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()

    def count(self, sql: str, *params) -> int:
        return self.query(sql, *params)[0][0]


def make_project(
    root: Path,
    policy: Path,
    reward: Path,
    n_prompts: int,
    *,
    k: int = 3,
    batch_size: int = 4,
    max_new_tokens: int = 8,
) -> Project:
    """Write a config pointing at the tiny models, create the DB and ingest n_prompts train prompts."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "pvar-loop.toml"
    config.write_text(
        f"""
[paths]
data_dir = "{root / "data"}"
[policy]
model = "{policy}"
dtype = "float32"
[generation]
k = {k}
max_new_tokens = {max_new_tokens}
batch_size = {batch_size}
temperature = 1.0
top_p = 1.0
[reward]
model = "{reward}"
dtype = "float32"
batch_size = 16
max_length = 128
""",
        encoding="utf-8",
    )
    project = Project(root, config, root / "data" / "pvar-loop.db")
    assert project.cli("init") == 0
    pool = root / "prompts.jsonl"
    pool.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts(n_prompts)), encoding="utf-8")
    assert project.cli("ingest", str(pool)) == 0
    return project
