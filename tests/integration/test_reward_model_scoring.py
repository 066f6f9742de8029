"""`pvar-loop score` with a reward model whose tokenizer and template differ from the policy's (the usual
case), and with answers too long for `[reward] max_length`: rows in the database, CLI output, status."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loop.acquisition.pvar import preference_variance
from storage.db import UnitOfWork, make_engine
from storage.repositories.checkpoints import ensure_initial_checkpoint
from storage.repositories.scores import add_generations, reward_exclusion_counts
from tests.support.reward_recipe import model_card_scores
from tests.support.scoring_project import make_project

REWARDS = (
    "SELECT p.text, g.text, r.score FROM reward_scores r JOIN generations g ON g.id = r.generation_id "
    "JOIN prompts p ON p.id = g.prompt_id ORDER BY g.prompt_id, g.sample_index"
)


def _set_reward_max_length(project, max_length: int) -> None:
    text = project.config.read_text()
    assert text.count("max_length = 128") == 1  # the [reward] one
    project.config.write_text(text.replace("max_length = 128", f"max_length = {max_length}"))


def test_policy_samples_are_rescored_with_the_reward_models_own_template(
    tmp_path, tiny_models, chat_reward_models, capsys
):
    rm = chat_reward_models["llama3-nopad-config-right"]
    project = make_project(tmp_path, tiny_models.policy_dir, rm.path, 4, k=3, max_new_tokens=12)
    capsys.readouterr()
    assert project.cli("score", "--no-progress") == 0
    rows = project.query(REWARDS)
    assert len(rows) >= 6  # most of the 12 samples are non-blank
    prompts, responses, scores = (list(col) for col in zip(*rows, strict=True))
    # The policy's template (ChatML, <|bos|>) is nowhere in what the RM reads: the stored raw texts go through
    # the RM's own template, and each score equals the model-card recipe on (prompt, raw response).
    assert not any("<|im_start|>" in r or "<|bos|>" in r for r in responses)
    expected, inputs = model_card_scores(rm.path, prompts, responses)
    np.testing.assert_allclose(scores, expected, atol=1e-4, rtol=0)
    from transformers import AutoTokenizer

    rm_tokenizer = AutoTokenizer.from_pretrained(rm.path)
    for ids in inputs:
        text = rm_tokenizer.decode(ids)
        assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
        assert "<|im_start|>" not in text and "<|bos|>" not in text


SHORT = ["Paris.", "It is Paris.", "The capital is Paris."]
LONG = "Paris is the capital of France, and here is a very long story about why that is so. " * 6


def test_answers_too_long_for_the_reward_model_are_excluded_and_recorded(
    tmp_path, tiny_models, chat_reward_models, capsys
):
    rm = chat_reward_models["qwen-endoftext-pad-right"]
    project = make_project(tmp_path, tiny_models.policy_dir, rm.path, 3, k=3)
    _set_reward_max_length(project, 48)
    # Stored samples are what scoring reuses (no sampling needed): the outcome is known in advance.
    uow = UnitOfWork(make_engine(f"sqlite:///{project.db}"))
    prompt_ids = [p for (p,) in project.query("SELECT id FROM prompts ORDER BY id")]
    samples = {
        prompt_ids[0]: [SHORT[0], SHORT[1], LONG],  # PVar from the two short ones
        prompt_ids[1]: [LONG, LONG + " Really.", SHORT[2]],  # one readable answer: no PVar
        prompt_ids[2]: SHORT,
    }
    with uow() as session:
        checkpoint = ensure_initial_checkpoint(session, str(tiny_models.policy_dir))
        add_generations(
            session,
            checkpoint,
            [
                {"prompt_id": p, "sample_index": i, "text": t, "n_tokens": 1}
                for p, texts in samples.items()
                for i, t in enumerate(texts)
            ],
        )

    capsys.readouterr()
    assert project.cli("score", "--no-progress", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["responses_unread"] == 3
    assert report["scored"] == 2
    assert [e["prompt_id"] for e in report["excluded"]] == [prompt_ids[1]]
    assert "2 too long for the reward model" in report["excluded"][0]["reason"]

    # No reward row for an answer that was not read whole; the PVar uses the readable ones only.
    assert LONG not in {t for _, t, _ in project.query(REWARDS)}
    rewards = dict(
        project.query(
            "SELECT g.text, r.score FROM reward_scores r JOIN generations g ON g.id = r.generation_id "
            "WHERE g.prompt_id = ?",
            prompt_ids[0],
        )
    )
    assert set(rewards) == {SHORT[0], SHORT[1]}
    (pvar,) = project.query(
        "SELECT k, value FROM prompt_scores WHERE prompt_id = ? AND metric = 'pvar'", prompt_ids[0]
    )
    assert pvar[0] == 2
    assert pvar[1] == pytest.approx(
        preference_variance(np.array([[rewards[SHORT[0]], rewards[SHORT[1]]]]))[0]
    )

    # Recorded, with the reason: a query and `status` say how many and why.
    reason = "response longer than [reward] max_length=48 tokens even without its prompt"
    with uow() as session:
        assert reward_exclusion_counts(session) == [(checkpoint, str(rm.path), reason, 3)]
    capsys.readouterr()
    assert project.cli("status") == 0
    assert f"  3 of {checkpoint} under {rm.path}: {reason}" in capsys.readouterr().out
