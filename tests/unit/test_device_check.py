"""The GPU device check refuses cleanly without a CUDA device, and the GPU lock keeps the CPU stack's pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXIT_NO_CUDA = 3


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_python_check_refuses_without_cuda(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "device_check.py"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == EXIT_NO_CUDA, done.stderr
    assert "no CUDA device" in done.stderr and "nothing was run" in done.stderr
    assert not (tmp_path / "cache").exists()  # refused before converting any model


@pytest.mark.skipif(
    shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi: it may have a GPU"
)
def test_script_refuses_without_cuda_before_installing(tmp_path):
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "device-check")],
        capture_output=True,
        text=True,
        env={**os.environ, "DEVICE_CHECK_VENV": str(venv)},
        timeout=60,
    )
    assert done.returncode == EXIT_NO_CUDA, done.stderr
    assert "no CUDA device" in done.stderr and "nothing installed" in done.stderr
    assert not venv.exists()


def test_gpu_lock_pins_vllm_ray_and_the_cpu_stack():
    gpu = _pins(ROOT / "requirements" / "gpu.lock.txt")
    cpu = _pins(ROOT / "requirements" / "lock.txt")
    assert (gpu["vllm"], gpu["ray"]) == ("0.29.0", "2.60.0")  # ray[llm]==2.60.0 pins vllm==0.29.0
    shared = [
        "torch",
        "transformers",
        "tokenizers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
        "sqlalchemy",
        "argilla",
    ]
    assert {n: gpu[n] for n in shared} == {n: cpu[n] for n in shared}
    assert all("cpu" not in v for v in gpu.values())  # no local CPU build pinned


def _device_check_module(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("device_check", ROOT / "benchmarks" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_stage_is_timed_and_a_failure_or_overrun_is_recorded_not_raised(monkeypatch):
    import time

    dc = _device_check_module(monkeypatch)
    results = []
    ok = dc.run_stage("fast", 5, lambda: {"items_per_s": 10.0}, results)
    failed = dc.run_stage("broken", 5, lambda: 1 / 0, results)
    slow = dc.run_stage("slow", 1, lambda: time.sleep(5), results)
    assert ok.ok and ok.figures == {"items_per_s": 10.0} and ok.seconds >= 0
    assert not failed.ok and failed.error.startswith("ZeroDivisionError")
    assert not slow.ok and "ran past its limit of 1 s" in slow.error and slow.seconds < 3
    assert [r.name for r in results] == ["fast", "broken", "slow"]
