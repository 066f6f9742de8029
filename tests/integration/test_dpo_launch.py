"""[training] launcher = "accelerate": DPO runs under `accelerate launch` in a subprocess (here ONE CPU process,
configs/accelerate/cpu_one_process.yaml) and the round reads its checkpoint exactly as an in-process one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from loop.config import ConfigError, parse_config
from loop.ml.dpo import TRAIN_META_FILE, PreferencePair, TrainingError, read_train_result
from loop.ml.dpo_launch import DpoJob, train_dpo_accelerate, write_job
from loop.ml.settings import TrainingSettings
from loop.rounds.state import Services, step
from storage.models import AnnotationItem, Checkpoint, Prompt, Round, TrainingRun
from storage.statuses import RoundStatus
from tests.support.annotation_setup import CHECKPOINT, make_round_items

ROOT = Path(__file__).resolve().parents[2]
CPU_CONFIG = ROOT / "configs" / "accelerate" / "cpu_one_process.yaml"
PAIRS = [PreferencePair(f"Question {i}?", f"A helpful answer {i}.", "No.") for i in range(4)]
FAST = TrainingSettings(learning_rate=5e-5, epochs=1, batch_size=4, lora=False, dtype="float32")


def _cfg(tiny_models, data_dir: Path):
    return parse_config(
        {
            "paths": {"data_dir": str(data_dir)},
            "policy": {"model": str(tiny_models.policy_dir), "dtype": "float32"},
            "reward": {"model": str(tiny_models.reward_dir), "dtype": "float32", "max_length": 128},
            "generation": {"k": 2, "max_new_tokens": 8, "batch_size": 8},
            "training": {
                "learning_rate": 5e-5,
                "dtype": "float32",
                "lora": False,
                "batch_size": 4,
                "launcher": "accelerate",
                "accelerate_config": str(CPU_CONFIG),
                "num_processes": 1,
            },
            "evaluation": {"judge": "reward", "max_new_tokens": 8, "n_bootstrap": 200},
        },
        env={},
    )


@pytest.mark.slow
def test_round_trains_under_accelerate_launch_and_advances(uow, tiny_models, tmp_path):
    cfg = _cfg(tiny_models, tmp_path / "data")
    items = make_round_items(uow, 8)
    with uow() as s:
        s.get(Checkpoint, CHECKPOINT).path = str(tiny_models.policy_dir)
        s.get(Round, items.round_id).status = RoundStatus.TRAINING
        for i, item in enumerate(s.scalars(select(AnnotationItem))):
            item.status, item.decision = "decided", "a" if i % 3 else "b"
        s.add_all(
            Prompt(id=f"eval{i}", text=f"Eval question {i}?", source="t", split="eval", meta={})
            for i in range(4)
        )

    assert step(uow, cfg, items.round_id, Services.default()) == RoundStatus.EVALUATED

    with uow() as s:
        rnd = s.get(Round, items.round_id)
        ckpt = s.get(Checkpoint, rnd.policy_out)
        run = s.scalar(select(TrainingRun))
        assert rnd.policy_out != CHECKPOINT and ckpt.round_id == items.round_id and ckpt.label_count == 8
        path, metrics = Path(ckpt.path), run.metrics
    # the in-process layout and meta: a plain transformers model plus the train_dpo record
    assert (path / TRAIN_META_FILE).is_file()
    result = read_train_result(path)
    assert metrics == {"steps": result.steps, "train_loss": result.train_loss, "seconds": result.seconds}
    assert result.steps == 2  # 8 pairs, batch 4, one epoch, one process
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(path)
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith(".")]  # no job or scratch dir left


@pytest.mark.slow
def test_a_failing_launch_names_the_key_and_quotes_the_subprocess(tiny_models, tmp_path):
    with pytest.raises(TrainingError) as e:
        train_dpo_accelerate(
            PAIRS,
            policy_dir=tiny_models.policy_dir,
            reference_dir=tmp_path / "no-such-model",
            output_dir=tmp_path / "out",
            settings=FAST,
            accelerate_config=CPU_CONFIG,
        )
    message = str(e.value)
    assert "[training] accelerate_config" in message and "exit code 1" in message
    assert "no-such-model" in message  # the subprocess's own error, from its stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_accelerate_config_is_a_config_error_before_launching(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match=r"\[training\] accelerate_config: .*gone\.yaml.* does not exist"):
        train_dpo_accelerate(
            PAIRS,
            policy_dir=tiny_models.policy_dir,
            reference_dir=tiny_models.policy_dir,
            output_dir=tmp_path / "out",
            settings=FAST,
            accelerate_config=tmp_path / "gone.yaml",
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_ranks_share_the_pairs_and_only_rank_0_publishes(tiny_models, tmp_path):
    """What a multi-GPU launch does, on CPU: torchrun starts loop.ml.dpo_job twice (gloo; accelerate launch
    runs CPU configs as one process, so it is called directly here)."""
    (tmp_path / "job").mkdir()
    out = tmp_path / "out" / "ck"
    out.parent.mkdir()
    pairs = [PreferencePair(f"Question {i}?", f"A helpful answer {i}.", "No.") for i in range(8)]
    settings = TrainingSettings(learning_rate=5e-5, epochs=1, batch_size=2, lora=False, dtype="float32")
    policy = str(tiny_models.policy_dir)
    spec = write_job(tmp_path / "job", DpoJob(pairs, policy, policy, str(out), settings))
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    proc = subprocess.Popen(
        [*run, "-m", "loop.ml.dpo_job", str(spec)], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert "rank 1: 2 steps" in stderr and "rank 0: 2 steps" in stderr  # 8 pairs / (2 ranks x batch 2)
    assert [p.name for p in out.parent.iterdir()] == ["ck"]  # one checkpoint, no scratch dir of either rank
    assert json.loads((out / TRAIN_META_FILE).read_text())["steps"] == 2
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)
