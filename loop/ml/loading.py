"""Loading (and releasing) tokenizers and models: every from_pretrained of the project goes through here.

One place for the checks every caller needs: a local model path must exist, a tokenizer must have a pad token
(batching), a reward model must have exactly one output logit, and errors name the model and keep the
library's message. torch/transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any

from storage.errors import PvarLoopError

DTYPES = ("float32", "bfloat16", "auto")

ModelRef = str | os.PathLike


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


def check_model_ref(model: ModelRef) -> None:
    """Fail early, with a clear message, on a local path that does not exist (hub ids pass through)."""
    model = str(model)
    looks_local = model.startswith(("/", "./", "../", "~")) or Path(model).exists()
    if looks_local and not Path(model).expanduser().is_dir():
        raise ModelLoadError(f"model directory {model!r} does not exist or is not a directory")


def ensure_pad_token(tokenizer: Any) -> None:
    """Batching needs a pad token; models without one pad with EOS (the usual convention)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def load_tokenizer(model: ModelRef) -> Any:
    """The model's tokenizer, with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    check_model_ref(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model))
    except Exception as e:
        raise ModelLoadError(f"could not load tokenizer {str(model)!r}: {e}") from e
    ensure_pad_token(tokenizer)
    return tokenizer


def load_causal_lm(model: ModelRef, dtype: str = "float32", device: str | None = None) -> Any:
    """A causal LM in `dtype` (a DTYPES name), moved to `device` when given."""
    dt = torch_dtype(dtype)
    check_model_ref(model)
    from transformers import AutoModelForCausalLM

    try:
        lm = AutoModelForCausalLM.from_pretrained(str(model), dtype=dt)
        if device is not None:
            lm.to(device)
    except Exception as e:
        raise ModelLoadError(f"could not load causal LM {str(model)!r}: {e}") from e
    return lm


def load_reward_model(model: ModelRef, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """(one-logit sequence classifier in eval mode, tokenizer) of a trained reward model.

    The head is checked before the weights load: a causal LM or a multi-class head would otherwise load with a
    fresh random head and score noise.
    """
    dt = torch_dtype(dtype)
    check_model_ref(model)
    from transformers import AutoConfig, AutoModelForSequenceClassification

    name = str(model)
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as e:
        raise ModelLoadError(f"could not load reward model config {name!r}: {e}") from e
    if config.num_labels != 1:
        raise ModelLoadError(
            f"reward model {name!r} has num_labels={config.num_labels} in its config; a reward model "
            "needs exactly one output logit (num_labels=1)"
        )
    tokenizer = load_tokenizer(name)
    try:
        rm = AutoModelForSequenceClassification.from_pretrained(name, config=config, dtype=dt)
        rm.to(device)
    except Exception as e:
        raise ModelLoadError(f"could not load reward model {name!r}: {e}") from e
    rm.eval()
    if rm.config.pad_token_id is None:
        # decoder classifiers find each row's last token through pad_token_id
        rm.config.pad_token_id = tokenizer.pad_token_id
    return rm, tokenizer


def load_reward_base(base: ModelRef, seed: int) -> tuple[Any, Any]:
    """(float32 one-logit classifier, tokenizer) to train a reward model from; a base without such a head
    (a causal LM, an encoder) gets a new one, initialised from `seed` without touching the global RNG."""
    import torch
    from transformers import AutoModelForSequenceClassification

    name = str(base)
    tokenizer = load_tokenizer(name)  # checks the path first
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                name, num_labels=1, dtype=torch.float32
            )
    except Exception as e:
        raise ModelLoadError(f"could not load base reward model {name!r}: {e}") from e
    # Decoder classifiers find each row's last token through pad_token_id; RewardScorer needs it saved.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def release_memory() -> None:
    """Collect garbage and empty the CUDA cache (only if torch is loaded: closing must not import it)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
