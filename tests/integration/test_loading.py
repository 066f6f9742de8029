"""A policy must be a causal LM and a reward model a one-logit sequence classifier: any other directory is
refused, through the CLI, with one line naming the config key (or checkpoint) and the directory, before
anything is generated, trained or written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from loop.ml.loading import ModelLoadError
from storage.models import Checkpoint, Evaluation, TrainingRun
from tests.integration.loop.rounds.test_training import _round
from tests.support.annotation_setup import CHECKPOINT
from tests.support.scoring_project import make_project


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and r.stderr.strip().endswith(errors[0]), r.stderr
    return errors[0]


def _cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PVAR_LOOP_")}
    return subprocess.run(
        [sys.executable, "-m", "loop.cli", "--config", str(config), *args],
        cwd=config.parent,
        capture_output=True,
        text=True,
        env={**base, "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def causal_lm_saying_one_label(tiny_models, tmp_path_factory) -> Path:
    """The tiny causal LM with num_labels=1 in its config: a one-logit count is not a classification head."""
    out = tmp_path_factory.mktemp("lm-one-label") / "policy"
    shutil.copytree(tiny_models.policy_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "LABEL_0"}, {"LABEL_0": 0}
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_score_refuses_a_sequence_classifier_as_policy(tiny_models, tmp_path):
    project = make_project(tmp_path, tiny_models.reward_dir, tiny_models.reward_dir, n_prompts=4)
    msg = _one_line_error(_cli(project.config, "score"))
    assert "[policy] model" in msg and str(tiny_models.reward_dir) in msg and "causal" in msg, msg
    assert "LlamaForSequenceClassification" in msg, msg
    for table in ("generations", "prompt_scores", "reward_scores", "checkpoints"):
        assert project.count(f"SELECT count(*) FROM {table}") == 0, table


@pytest.mark.parametrize("reward", ["causal_lm", "causal_lm_saying_one_label"])
def test_score_refuses_a_reward_model_without_a_one_logit_classifier_head(
    reward, tiny_models, causal_lm_saying_one_label, tmp_path
):
    reward_dir = tiny_models.policy_dir if reward == "causal_lm" else causal_lm_saying_one_label
    project = make_project(tmp_path, tiny_models.policy_dir, reward_dir, n_prompts=4)
    msg = _one_line_error(_cli(project.config, "score"))
    assert "[reward] model" in msg and str(reward_dir) in msg and "sequence-classification" in msg, msg
    for table in ("generations", "prompt_scores", "reward_scores", "checkpoints"):
        assert project.count(f"SELECT count(*) FROM {table}") == 0, table


def _write_config(path: Path, data_dir: Path, policy: Path, reward: Path, judge: str = "reward") -> Path:
    path.write_text(f"""
[paths]
data_dir = "{data_dir}"
[policy]
model = "{policy}"
dtype = "float32"
[generation]
k = 2
max_new_tokens = 8
batch_size = 8
[reward]
model = "{reward}"
dtype = "float32"
max_length = 128
[training]
learning_rate = 5e-5
batch_size = 4
lora = false
dtype = "float32"
[evaluation]
judge = "{judge}"
max_new_tokens = 8
n_bootstrap = 200
""")
    return path


def _count(uow, model) -> int:
    with uow() as s:
        return s.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("which", ["config", "warm_start_checkpoint"])
def test_train_refuses_a_sequence_classifier_as_policy(which, uow, sqlite_url, tiny_models, tmp_path):
    items = _round(uow, tiny_models)
    policy = tiny_models.reward_dir if which == "config" else tiny_models.policy_dir
    if which == "warm_start_checkpoint":
        with uow() as s:
            s.get(Checkpoint, CHECKPOINT).path = str(tiny_models.reward_dir)
    config = _write_config(tmp_path / "pvar-loop.toml", tmp_path / "data", policy, tiny_models.reward_dir)
    checkpoints = _count(uow, Checkpoint)

    r = _cli(config, "train", "--round", "1", env={"PVAR_LOOP_DATABASE_URL": sqlite_url})
    msg = _one_line_error(r)
    key = "[policy] model" if which == "config" else f"checkpoint {CHECKPOINT!r}"
    assert key in msg and str(tiny_models.reward_dir) in msg and "causal" in msg, msg
    assert items.round_id and _count(uow, TrainingRun) == 0 and _count(uow, Checkpoint) == checkpoints
    assert not (tmp_path / "data" / "checkpoints").exists()


@pytest.mark.parametrize("which", ["checkpoint", "reference", "judge"])
def test_evaluate_refuses_a_model_with_the_wrong_head(which, uow, sqlite_url, tiny_models, tmp_path):
    _round(uow, tiny_models)
    policy, reward = tiny_models.policy_dir, tiny_models.reward_dir
    if which == "checkpoint":
        with uow() as s:
            s.get(Checkpoint, CHECKPOINT).path = str(tiny_models.reward_dir)
    elif which == "reference":
        policy = tiny_models.reward_dir
    else:
        reward = tiny_models.policy_dir
    config = _write_config(tmp_path / "pvar-loop.toml", tmp_path / "data", policy, reward)

    r = _cli(config, "evaluate", "--checkpoint", CHECKPOINT, env={"PVAR_LOOP_DATABASE_URL": sqlite_url})
    msg = _one_line_error(r)
    key = {
        "checkpoint": f"checkpoint {CHECKPOINT!r}",
        "reference": "[policy] model",
        "judge": "[reward] model",
    }
    assert key[which] in msg, msg
    assert str(tiny_models.policy_dir if which == "judge" else tiny_models.reward_dir) in msg, msg
    assert _count(uow, Evaluation) == 0


def test_loaders_refuse_the_wrong_head(tiny_models, causal_lm_saying_one_label):
    """Every other path (demo, experiment, benchmarks) loads through loop.ml.loading, which checks too."""
    from loop.ml.loading import load_causal_lm, load_reward_model

    with pytest.raises(ModelLoadError, match="LlamaForSequenceClassification"):
        load_causal_lm(tiny_models.reward_dir)
    for lm in (tiny_models.policy_dir, causal_lm_saying_one_label):
        with pytest.raises(ModelLoadError, match="sequence-classification head"):
            load_reward_model(lm)
    load_causal_lm(tiny_models.policy_dir)
    load_reward_model(tiny_models.reward_dir)
