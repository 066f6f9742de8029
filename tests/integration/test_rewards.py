"""RewardScorer scores every conversation exactly as the reward model's card says to score it alone.

The reference below is written from the model-card recipe (/work/shared/notes/reward-models.md), not from the
scorer: render [user, assistant] with the RM's OWN chat template (no system prompt added), drop the leading BOS
text so the tokenizer's own BOS is the only one, tokenize, run a batch of one through the model's forward and
take the raw logit. The scorer batches, pads and buckets by length; each row must still match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loop.ml.rewards import RewardScorer
from tests.support.reward_recipe import model_card_scores

# Different lengths (so batches are padded), surrounding whitespace (Llama's template trims), a multi-line
# answer, a one-character exchange.
PROMPTS = [
    "Hello there",
    "What is the difference between a list and a tuple in Python?",
    "x",
    "Explain how a dictionary stores its keys, and why lookups are fast on average.",
    "Name a prime number.",
    "  Sort these words: pear, apple, fig.  ",
    "Write two lines about the sea.",
    "Why is the sky blue?",
    "ok",
]
RESPONSES = [
    "Hi! How can I help?",
    "A list is mutable; a tuple is not.",
    "y",
    "It hashes each key to a slot in a table, so finding a key takes constant time on average.",
    "Seven.",
    "apple, fig, pear\n",
    "The sea is wide.\nThe sea is deep.",
    "Sunlight scatters off the air's molecules, and blue light scatters the most.",
    "Fine.",
]


@pytest.fixture(scope="module")
def reference(chat_reward_models):
    return {name: model_card_scores(rm.path, PROMPTS, RESPONSES) for name, rm in chat_reward_models.items()}


VARIANTS = [
    "llama3-nopad-config-right",
    "llama3-nopad-config-left",
    "llama3-eos-pad-config-left",
    "llama3-eos-pad-config-right",
    "qwen-endoftext-pad-right",
    "qwen-endoftext-pad-left",
    "qwen-eos-pad-left",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_scores_equal_the_model_card_recipe(chat_reward_models, reference, variant):
    rm = chat_reward_models[variant]
    expected, inputs = reference[variant]
    scorer = RewardScorer(str(rm.path), max_length=512, batch_size=4)
    try:
        scores = scorer.score(PROMPTS, RESPONSES)
        # The scorer's token ids are the recipe's: exactly one BOS for Llama, none for Qwen.
        assert scorer._encode(PROMPTS, RESPONSES) == inputs
    finally:
        scorer.close()
    bos = 1 if rm.family == "llama3" else 0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(rm.path)
    assert (
        all(ids.count(tokenizer.bos_token_id) == bos for ids in inputs)
        if bos
        else tokenizer.bos_token is None
    )
    if rm.family == "llama3":
        # The case that breaks a "first pad token" lookup: every conversation ends with the pad token.
        assert all(ids[-1] == tokenizer.pad_token_id for ids in inputs)
    np.testing.assert_allclose(scores, expected, atol=1e-4, rtol=0)
    assert len(np.unique(np.round(expected, 5))) == len(PROMPTS)  # distinct inputs, distinct scores


# ---- truncation: never a cut-off answer ---------------------------------------------------------------------

LONG_PROMPT = (
    "Please read this background carefully before you answer. " * 12 + "What is the capital of France?"
)
ANSWER = "The capital of France is Paris."


def test_a_long_prompt_loses_its_start_and_the_whole_answer_is_read(chat_reward_models):
    rm = chat_reward_models["llama3-nopad-config-right"]
    scorer = RewardScorer(str(rm.path), max_length=48, batch_size=4)
    try:
        (ids,) = scorer._encode([LONG_PROMPT], [ANSWER])
        scores = scorer.score([LONG_PROMPT, LONG_PROMPT], [ANSWER, ANSWER[:-1] + "!"])
        tokenizer = scorer._tokenizer
    finally:
        scorer.close()
    _, (whole,) = model_card_scores(rm.path, [LONG_PROMPT], [ANSWER])
    assert len(whole) > 48 and len(ids) <= 48
    text = tokenizer.decode(ids)
    # One BOS, the user turn holds the END of the prompt, the assistant turn and its closing token are whole.
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
    assert text.count("<|begin_of_text|>") == 1
    kept_prompt = text.split("<|end_header_id|>\n\n")[1].split("<|eot_id|>")[0]
    assert 0 < len(kept_prompt) < len(LONG_PROMPT) and LONG_PROMPT.endswith(kept_prompt)
    assert text.endswith(f"<|start_header_id|>assistant<|end_header_id|>\n\n{ANSWER}<|eot_id|>")
    # The score is the recipe's on the kept conversation, and the answer's last token counts.
    expected, _ = model_card_scores(rm.path, [kept_prompt], [ANSWER])
    np.testing.assert_allclose(scores[0], expected[0], atol=1e-4, rtol=0)
    assert abs(scores[0] - scores[1]) > 1e-6


def test_an_answer_that_does_not_fit_alone_is_excluded_with_its_reason(
    chat_reward_models, tiny_models, tmp_path
):
    long_answer = "Paris is the capital, and here is why, at length. " * 8
    for path in (
        chat_reward_models["qwen-endoftext-pad-right"].path,
        _without_template(tiny_models, tmp_path),
    ):
        scorer = RewardScorer(str(path), max_length=40, batch_size=4)
        try:
            scores = scorer.score(["Capital?", "Capital?", LONG_PROMPT], [ANSWER, long_answer, ANSWER])
            encoded = scorer._encode(["Capital?"], [long_answer])
            exclusions = scorer.last_exclusions
        finally:
            scorer.close()
        assert encoded == [None]
        assert np.isfinite(scores[[0, 2]]).all() and np.isnan(scores[1])
        assert list(exclusions) == [1]
        assert "[reward] max_length=40" in exclusions[1]


def _without_template(tiny_models, tmp_path: Path) -> Path:
    """The tiny project RM as a text-pair model (no chat template, like BERT-style RMs)."""
    import shutil

    out = tmp_path / "text-pair-rm"
    shutil.copytree(tiny_models.reward_dir, out)
    (out / "chat_template.jinja").unlink()
    return out
