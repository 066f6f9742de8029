"""Small helpers shared by the transformers-based generation and reward backends.

Kept free of module-level torch/transformers imports so importing it stays cheap.
"""

from __future__ import annotations

import gc
import hashlib
import sys
from pathlib import Path
from typing import Any

from storage.errors import PvarLoopError

DTYPES = ("float32", "bfloat16", "auto")


class ModelLoadError(PvarLoopError, RuntimeError):
    """A model or tokenizer could not be loaded; the message names the model and keeps the original error."""


def torch_dtype(name: str) -> Any:
    """Map a config dtype name to what from_pretrained(dtype=...) takes."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    if name == "auto":
        return "auto"
    import torch

    return getattr(torch, name)


def check_model_ref(model: str) -> None:
    """Fail early, with a clear message, on a local path that does not exist (hub ids pass through)."""
    looks_local = model.startswith(("/", "./", "../", "~")) or Path(model).exists()
    if looks_local and not Path(model).expanduser().is_dir():
        raise ModelLoadError(f"model directory {model!r} does not exist or is not a directory")


def derive_seed(seed: int, prompts: list[str]) -> int:
    """A 63-bit seed from the run seed and the prompts, stable across processes (unlike hash())."""
    digest = hashlib.sha256(str(seed).encode())
    for prompt in prompts:
        digest.update(b"\x1f")
        digest.update(prompt.encode("utf-8"))
    return int.from_bytes(digest.digest()[:8], "big") >> 1


def ensure_pad_token(tokenizer: Any) -> None:
    """Batching needs a pad token; models without one pad with EOS (the usual convention)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def release_memory() -> None:
    """Collect garbage and empty the CUDA cache (only if torch is loaded: closing must not import it)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def move_into_place(checkpoint: Path, output_dir: Path, who: str) -> None:
    """Publish a fully written checkpoint directory: rename() of a directory is atomic on POSIX and fails if the
    target appeared meanwhile, so readers never see half a checkpoint and nothing is overwritten."""
    try:
        Path(checkpoint).rename(output_dir)
    except OSError as e:
        raise FileExistsError(f"{who}: cannot move checkpoint into {output_dir}: {e}") from e
