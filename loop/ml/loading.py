"""Loading (and releasing) tokenizers and models: every from_pretrained of the project goes through here.

One place for the checks every caller needs: a local model path must exist, a tokenizer must have a pad token
(batching), a policy must have a causal-LM head and a reward model a one-logit sequence-classification head
(check_causal_lm/check_reward_model, which callers also run up front naming the config key), and errors name
the model and keep the library's message. torch/transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import functools
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


def available_offline(model: ModelRef) -> bool:
    """A local model directory, or a hub id whose config is in the Hugging Face cache (a download may still be
    partial; this only tells `init` whether to say what to set)."""
    model = str(model)
    if Path(model).expanduser().is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    try:  # HF_HUB_CACHE read here too: the library reads it once, at its import
        found = try_to_load_from_cache(model, "config.json", cache_dir=os.environ.get("HF_HUB_CACHE"))
        return isinstance(found, str)
    except ValueError:  # not a valid repo id either
        return False


def model_config(model: ModelRef, what: str) -> Any:
    from transformers import AutoConfig

    check_model_ref(model)
    try:
        return AutoConfig.from_pretrained(str(model))
    except Exception as e:
        raise ModelLoadError(f"{what}: could not load the config of {str(model)!r}: {e}") from e


def _class_names(mapping: Any) -> set[str]:
    """The model class names of a transformers auto mapping (values are a name or a tuple of names)."""
    names: set[str] = set()
    for value in mapping.values():
        names.update(value if isinstance(value, list | tuple) else [value])
    return names


def _head_matches(config: Any, mapping: Any) -> bool:
    """Whether the weights' own class (config.architectures) is one of `mapping`'s, else (a config without
    architectures) whether the model type has such a class at all."""
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return bool(set(architectures) & _class_names(mapping))
    return getattr(config, "model_type", None) in mapping


def _architectures(config: Any) -> str:
    return ", ".join(getattr(config, "architectures", None) or []) or f"model type {config.model_type!r}"


def check_causal_lm(model: ModelRef, what: str = "policy") -> None:
    """Refuse a directory whose weights have no causal-LM head (a sequence classifier, an encoder): loaded as a
    causal LM it would get a fresh random head, sample noise and train a bogus checkpoint. `what` names where
    the model comes from in the error (a config key, a checkpoint)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = model_config(model, what)
    if not _head_matches(config, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        raise ModelLoadError(
            f"{what}: {str(model)!r} is not a causal language model ({_architectures(config)}); a policy needs "
            "a causal-LM head, e.g. LlamaForCausalLM"
        )


def check_reward_model(model: ModelRef, what: str = "reward model") -> Any:
    """Refuse a directory without a one-logit sequence-classification head, checked before the weights load: a
    causal LM or a multi-class head would otherwise load with a fresh random head and score noise. Returns the
    model's config."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    config = model_config(model, what)
    needs = (
        "a reward model needs a one-logit sequence-classification head (e.g. LlamaForSequenceClassification"
    )
    if not _head_matches(config, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES):
        raise ModelLoadError(
            f"{what}: {str(model)!r} is not a sequence classifier ({_architectures(config)}); {needs}, "
            "num_labels=1)"
        )
    if config.num_labels != 1:
        raise ModelLoadError(
            f"{what}: {str(model)!r} has num_labels={config.num_labels} in its config; {needs}, num_labels=1: "
            "exactly one output logit)"
        )
    return config


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
    """A causal LM in `dtype` (a DTYPES name), moved to `device` when given; other heads are refused."""
    dt = torch_dtype(dtype)
    check_causal_lm(model)
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
    from transformers import AutoModelForSequenceClassification

    name = str(model)
    config = check_reward_model(name)
    tokenizer = load_tokenizer(name)
    try:
        rm = AutoModelForSequenceClassification.from_pretrained(name, config=config, dtype=dt)
        rm.to(device)
    except Exception as e:
        raise ModelLoadError(f"could not load reward model {name!r}: {e}") from e
    rm.eval()
    # config.pad_token_id stays as shipped: it decides which token the model reads (RewardScorer batches
    # with its own pad id so each row reads what it would alone).
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
    """Collect garbage, give the freed heap back to the OS and empty the CUDA cache (only if torch is loaded:
    closing must not import it)."""
    gc.collect()
    trim_heap()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def trim_heap() -> bool:
    """glibc's malloc_trim(0): the pages of freed blocks go back to the OS. glibc keeps them otherwise while any
    live block sits above them, so a process that trains and evaluates one model after another (a sweep worker)
    grew by about 0.5 GB a cell until two workers no longer fitted 24 GiB. False where there is no glibc."""
    malloc_trim = _malloc_trim()
    return bool(malloc_trim(0)) if malloc_trim is not None else False


@functools.cache
def _malloc_trim() -> Any:
    """The C library's malloc_trim among this process's own symbols (looked up once), or None."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
