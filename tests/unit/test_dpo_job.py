"""loop.ml.dpo_job's process hygiene: a launched DPO process leaves no process group behind."""

from __future__ import annotations

from types import SimpleNamespace

import torch.distributed as dist

from loop.ml import dpo, dpo_job, dpo_launch


def test_the_job_destroys_its_process_group(monkeypatch, tmp_path):
    # The Trainer initialises the group under `accelerate launch`; one left at exit makes NCCL warn that it
    # may leak resources (seen on the H200 device check).
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    job = SimpleNamespace(
        pairs=[], policy_dir=tmp_path, reference_dir=tmp_path, output_dir=tmp_path, settings=None
    )
    monkeypatch.setattr(dpo_launch, "read_job", lambda path: job)
    result = SimpleNamespace(steps=1, train_loss=0.5, seconds=0.1)
    monkeypatch.setattr(dpo, "train_dpo", lambda *a, **kw: result)
    try:
        assert dpo_job.main([str(tmp_path / "job.json")]) == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
