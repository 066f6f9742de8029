"""vLLM binds one OpenMP thread per core it is given: the defaults pvar-loop sets must follow the process's cores
and OMP_NUM_THREADS, or two 1-thread sweep workers each start a thread on every core (and spin against each
other)."""

from __future__ import annotations

import os

import pytest

from loop.experiment.sweep.run import worker_cores
from loop.ml.vllm_engine import _cpu_defaults

CORES = sorted(os.sched_getaffinity(0))


def test_vllm_binds_to_the_process_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _cpu_defaults()["VLLM_CPU_OMP_THREADS_BIND"] == ",".join(map(str, CORES))


def test_vllm_binds_no_more_cores_than_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _cpu_defaults()["VLLM_CPU_OMP_THREADS_BIND"] == str(CORES[0])


@pytest.mark.skipif(len(CORES) < 2, reason="needs 2 cores (CI and the project machine have 2)")
def test_sweep_workers_get_disjoint_cores():
    slices = worker_cores(2)
    assert len(slices) == 2 and all(slices)
    assert not set(slices[0]) & set(slices[1])
    assert sorted(slices[0] + slices[1]) == CORES[: 2 * (len(CORES) // 2)]


def test_more_workers_than_cores_share_them_all():
    assert worker_cores(len(CORES) + 1) == [CORES] * (len(CORES) + 1)
