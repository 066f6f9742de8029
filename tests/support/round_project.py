"""A small project directory for round/scheduler tests: tiny models, demo-world prompts, a config pointing at
the session Argilla server, and helpers to run `pvar-loop` as a separate process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loop.demo.world import write_demo_prompts


@dataclass
class Project:
    root: Path
    config: Path
    env: dict[str, str]

    def cli(
        self, *args: str, extra_env: dict | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "loop.cli", "--config", str(self.config), *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "loop.cli", "--config", str(self.config), *args],
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def make_project(
    root: Path,
    tiny_models,
    *,
    database_url: str,
    argilla=None,
    dataset: str = "rounds",
    n_train: int = 12,
    budget: int = 4,
    ingest: bool = True,
) -> Project:
    """Config, prompt files (prompts/train.jsonl, prompts/eval.jsonl) and, unless `ingest` is False (a test
    that runs `init`/`ingest` itself), a migrated database holding them."""
    train, evals = write_demo_prompts(root / "prompts", n_train=n_train, n_eval=4, seed=3)
    config = root / "pvar-loop.toml"
    config.write_text(f"""
[paths]
data_dir = "{root / "data"}"
[policy]
model = "{tiny_models.policy_dir}"
dtype = "float32"
[generation]
k = 3
max_new_tokens = 8
batch_size = 8
[reward]
model = "{tiny_models.reward_dir}"
dtype = "float32"
max_length = 128
[selection]
budget = {budget}
[argilla]
dataset = "{dataset}"
workspace = "{argilla.workspace if argilla else "pvar-loop"}"
[training]
learning_rate = 5e-5
batch_size = 4
max_length = 128
lora = false
dtype = "float32"
[evaluation]
judge = "verifier"
max_new_tokens = 8
n_bootstrap = 200
[scheduler]
tick_seconds = 2
poll_seconds = 30
collect_deadline_hours = 1.0
""")
    env = {
        **os.environ,
        "PVAR_LOOP_DATABASE_URL": database_url,
        "HF_HUB_OFFLINE": "1",
        "PVAR_LOOP_ACTOR": "test",
    }
    if argilla is not None:
        env |= {"PVAR_LOOP_ARGILLA_URL": argilla.url, "PVAR_LOOP_ARGILLA_API_KEY": argilla.api_key}
    project = Project(root, config, env)
    if not ingest:
        return project
    for args in (["db", "upgrade"], ["ingest", str(train)], ["ingest", str(evals), "--split", "eval"]):
        r = project.cli(*args)
        assert r.returncode == 0, r.stderr
    return project
