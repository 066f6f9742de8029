"""DPO under `accelerate launch` ([training] launcher = "accelerate"): the run is written down as a job (a JSON
spec plus the pairs as JSON lines), loop.ml.dpo_job trains it in a subprocess on every device the accelerate
config names, and the checkpoint it publishes is read back exactly like an in-process one (same directory
layout, same meta file), so the round cannot tell the two launchers apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loop.config import ConfigError
from loop.ml.dpo import PreferencePair, TrainingError, TrainResult, read_train_result
from loop.ml.settings import TrainingSettings

JOB_FILE = "job.json"
PAIRS_FILE = "pairs.jsonl"
STDERR_TAIL_LINES = 30  # what a failed launch's error quotes of the subprocess's stderr
KEY = "[training] accelerate_config"


@dataclass(frozen=True)
class DpoJob:
    """One DPO run as loop.ml.dpo_job reads it: the arguments of loop.ml.dpo.train_dpo."""

    pairs: list[PreferencePair]
    policy_dir: str
    reference_dir: str
    output_dir: str
    settings: TrainingSettings


def write_job(job_dir: Path, job: DpoJob) -> Path:
    """Write the job into job_dir (spec and pairs file); returns the spec's path."""
    pairs_file = job_dir / PAIRS_FILE
    with pairs_file.open("w", encoding="utf-8") as out:
        for p in job.pairs:
            out.write(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n")
    spec = {
        "policy_dir": job.policy_dir,
        "reference_dir": job.reference_dir,
        "output_dir": job.output_dir,
        "pairs_file": str(pairs_file),
        "settings": job.settings.to_dict(),
    }
    path = job_dir / JOB_FILE
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return path


def read_job(path: Path) -> DpoJob:
    """The job write_job wrote; ValueError naming the file when it is not one."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        lines = Path(spec["pairs_file"]).read_text(encoding="utf-8").splitlines()
        pairs = [PreferencePair(**json.loads(line)) for line in lines if line.strip()]
        return DpoJob(
            pairs=pairs,
            policy_dir=str(spec["policy_dir"]),
            reference_dir=str(spec["reference_dir"]),
            output_dir=str(spec["output_dir"]),
            settings=TrainingSettings.from_dict(spec["settings"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a DPO job spec: {type(e).__name__}: {e}") from e


def launch_command(accelerate_config: Path, num_processes: int | None, spec: Path) -> list[str]:
    """`accelerate launch` through this interpreter, so the subprocess runs in the same environment."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    if num_processes is not None:
        cmd += ["--num_processes", str(num_processes)]
    return [*cmd, "-m", "loop.ml.dpo_job", str(spec)]


def train_dpo_accelerate(
    pairs: Sequence[PreferencePair],
    *,
    policy_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: TrainingSettings,
    accelerate_config: str | os.PathLike,
    num_processes: int | None = None,
) -> TrainResult:
    """loop.ml.dpo.train_dpo, run by `accelerate launch --config_file accelerate_config` in a subprocess.

    ConfigError naming `[training] accelerate_config` when the file is missing; TrainingError with the tail of
    the subprocess's stderr when it fails; FileExistsError, before launching, when output_dir exists."""
    accelerate_config = Path(accelerate_config).expanduser()
    if not accelerate_config.is_file():
        raise ConfigError(
            f"{KEY}: accelerate config file {str(accelerate_config)!r} does not exist or is not a file"
        )
    pairs = list(pairs)
    if not pairs:
        raise ValueError("train_dpo_accelerate: no preference pairs given (need at least one)")
    output_dir = Path(output_dir).absolute()
    if output_dir.exists():
        raise FileExistsError(
            f"train_dpo: checkpoint directory {output_dir} already exists; not overwriting it"
        )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    job = DpoJob(pairs, str(policy_dir), str(reference_dir), str(output_dir), settings)
    with tempfile.TemporaryDirectory(prefix=f".{output_dir.name}.job-", dir=output_dir.parent) as job_dir:
        spec = write_job(Path(job_dir), job)
        code, tail = _run(launch_command(accelerate_config, num_processes, spec))
    if code != 0:
        raise TrainingError(
            f'DPO under `accelerate launch` ([training] launcher = "accelerate", {KEY} = '
            f"{str(accelerate_config)!r}) failed with exit code {code}; the end of its stderr:\n"
            + "\n".join(tail)
        )
    return read_train_result(output_dir)


def _run(cmd: list[str]) -> tuple[int, list[str]]:
    """Run cmd with its stderr passed through (progress bars, logs) and its last lines kept for the error."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # `-m loop.ml.dpo_job` finds this very checkout
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    try:
        # Its own process group, so that an interrupted parent takes the launcher and all its workers along.
        proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, text=True, errors="replace", env=env, start_new_session=True
        )
    except OSError as e:
        raise TrainingError(f"cannot start `accelerate launch` ({KEY}): {e}") from e
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
        proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        proc.stderr.close()
    return proc.returncode, list(tail)
