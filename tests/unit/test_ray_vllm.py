"""The Ray engine's GPU path (loop.scoring.ray_vllm) without a GPU: how prompts become K seeded sample rows,
what the reward rows ask vLLM for, and how rewarded samples become a batch's PVar rows."""

from __future__ import annotations

import math

import pytest

from loop.config import ScoringConfig
from loop.scoring import ray_stages as stages
from loop.scoring.ray_driver import RayEngineError
from loop.scoring.ray_vllm import (
    generated_sample,
    generation_processor_kwargs,
    items_from_samples,
    reward_of,
    reward_pooling_params,
    reward_processor_kwargs,
    sample_rows,
    sample_seed,
    sampling_params,
    stored_sample_rows,
)
from storage.repositories.prompts import PromptRow

KNOBS = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 16}


def _prompt_row(texts, n_tokens=None, prompt="Why is the sky blue?"):
    return {
        stages.BATCH: 3,
        stages.PROMPT_ID: "p1",
        stages.PROMPT: prompt,
        stages.TEXTS: texts,
        stages.N_TOKENS: n_tokens or [-1 if t is None else 5 for t in texts],
    }


def test_a_prompt_becomes_one_single_output_row_per_missing_sample_with_its_own_seed():
    rows = list(sample_rows(_prompt_row([None, "stored", None, None]), k=4, seed=7, knobs=KNOBS))
    assert [r["sample_index"] for r in rows] == [0, 2, 3]  # the stored slot is not sampled again
    params = [r["sampling_params"] for r in rows]
    assert {p["n"] for p in params} == {1}  # ray.data.llm keeps the first output only
    seeds = [p["seed"] for p in params]
    assert len(set(seeds)) == 3 and seeds == [sample_seed(7, "Why is the sky blue?", i) for i in (0, 2, 3)]
    assert params[0] == {"n": 1, "temperature": 0.8, "top_p": 0.95, "max_tokens": 16, "seed": seeds[0]}
    assert rows[0]["messages"] == [{"role": "user", "content": "Why is the sky blue?"}]
    assert {r[stages.BATCH] for r in rows} == {3} and "prompt" not in rows[0]  # vLLM owns "prompt"


def test_sample_seeds_are_stable_and_differ_by_run_seed_prompt_and_index():
    assert sample_seed(0, "a", 1) == sample_seed(0, "a", 1)
    assert (
        len({sample_seed(0, "a", 1), sample_seed(1, "a", 1), sample_seed(0, "b", 1), sample_seed(0, "a", 2)})
        == 4
    )
    assert 0 <= sample_seed(0, "a", 1) < 2**63
    assert sampling_params(KNOBS, 5)["seed"] == 5


def test_stored_samples_go_to_the_reward_model_only():
    (row,) = stored_sample_rows(_prompt_row([None, "kept", None], [-1, 9, -1]), k=3)
    assert (row["sample_index"], row["text"], row[stages.N_TOKENS], row[stages.NEW]) == (1, "kept", 9, False)


def test_generated_samples_count_tokens_without_the_closing_eos():
    base = {stages.BATCH: 1, stages.PROMPT_ID: "p1", "prompt_text": "q", "sample_index": 2}
    stopped = generated_sample({**base, "generated_tokens": [5, 6, 2], "generated_text": "ab"}, eos_ids=(2,))
    cut = generated_sample({**base, "generated_tokens": [5, 6, 7], "generated_text": "a\x00c"}, eos_ids=(2,))
    assert (stopped["text"], stopped[stages.N_TOKENS], stopped[stages.NEW]) == ("ab", 2, True)
    assert (cut["text"], cut[stages.N_TOKENS]) == ("a\ufffdc", 3)  # NUL cannot be stored in PostgreSQL


def test_reward_rows_ask_for_raw_logits_not_the_default_sigmoid():
    assert reward_pooling_params() == {"use_activation": False}
    row = {
        stages.BATCH: 1,
        stages.PROMPT_ID: "p1",
        "prompt_text": "q",
        "sample_index": 0,
        "text": "a",
        stages.N_TOKENS: 1,
        stages.NEW: True,
        "embeddings": [-3.5],
    }
    assert reward_of(row)["reward"] == -3.5  # a logit below 0: no sigmoid squashed it
    with pytest.raises(RayEngineError, match="2 values per response"):
        reward_of({**row, "embeddings": [0.1, 0.9]})


def test_processor_settings():
    scoring = ScoringConfig(workers=4)
    gen = generation_processor_kwargs("policy", "bfloat16", scoring, 40)
    assert gen["task_type"] == "generate" and gen["engine_kwargs"]["enable_prefix_caching"] is True
    assert (gen["concurrency"], gen["batch_size"]) == (4, 40)
    rm = reward_processor_kwargs("rm", "bfloat16", 512, scoring, 40)
    assert rm["task_type"] == "classify" and rm["engine_kwargs"]["max_model_len"] == 512
    # RewardScorer's token ids go in as they are: no second chat template or tokenization.
    assert (rm["chat_template_stage"], rm["tokenize_stage"], rm["detokenize_stage"]) == (False, False, False)


def test_rewarded_samples_become_the_batchs_pvar_rows():
    batch = [PromptRow("p1", "q1"), PromptRow("p2", "q2")]

    def s(pid, i, text, reward, new=True):
        return {
            stages.PROMPT_ID: pid,
            "sample_index": i,
            "text": text,
            stages.N_TOKENS: 2,
            stages.NEW: new,
            "reward": reward,
        }

    samples = [
        s("p1", 1, "b", 1.0),
        s("p1", 0, "a", -1.0, new=False),
        s("p2", 0, " ", 0.3),
        s("p2", 1, "c", math.inf),
    ]
    p1, p2 = items_from_samples(batch, samples, k=2)
    assert (p1.rewards, p1.new, p1.reason) == ({0: -1.0, 1: 1.0}, {1}, None)
    assert p1.pvar > 0 and p1.gap == 2.0
    # A blank sample gets no reward (the local rule) and a non-finite one is dropped: p2 cannot be compared.
    assert p2.rewards == {} and "0 valid responses of 2" in p2.reason and "1 blank" in p2.reason
