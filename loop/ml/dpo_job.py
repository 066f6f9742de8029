"""One DPO run under `accelerate launch` (`python -m loop.ml.dpo_job JOB.json`, started by loop.ml.dpo_launch).

Every process trains (the HF Trainer inside TRL shards the batches across them); global rank 0 saves and
publishes the checkpoint through loop.ml.dpo.train_dpo, so its layout and meta are the in-process ones.
Failures end the process with a traceback on stderr, which the launcher quotes.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def is_main_process() -> bool:
    """Global rank 0 (torchrun sets RANK; a single-process launch sets nothing)."""
    return int(os.environ.get("RANK", "0")) == 0


def _leave_process_group() -> None:
    """The Trainer opens the process group and never closes it; NCCL warns of leaked resources at exit."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m loop.ml.dpo_job JOB.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from loop.ml.dpo import train_dpo
    from loop.ml.dpo_launch import read_job

    job = read_job(Path(args[0]))
    try:
        result = train_dpo(
            job.pairs,
            policy_dir=job.policy_dir,
            reference_dir=job.reference_dir,
            output_dir=job.output_dir,
            settings=job.settings,
            main_process=is_main_process(),
        )
    finally:
        _leave_process_group()
    logging.getLogger(__name__).info(
        "rank %s: %s steps, loss %.4f, %.1f s",
        os.environ.get("RANK", "0"),
        result.steps,
        result.train_loss,
        result.seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
