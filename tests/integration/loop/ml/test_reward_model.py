"""Reward-model training (TRL RewardTrainer) on the tiny random Llama: it learns a toy preference rule, the
checkpoint reloads in RewardScorer with raw logits, and `pvar-loop reward-model train` works on a real DB."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from loop.cli.app import main
from loop.ml.dpo import PreferencePair
from loop.ml.reward_model import (
    REWARD_META_FILE,
    agreement_with,
    evaluate_reward_model,
    read_reward_result,
    reward_training_dataset,
    split_pairs,
    train_reward_model,
)
from loop.ml.rewards import RewardScorer
from loop.ml.settings import RewardTrainSettings
from storage.models import AnnotationItem, Prompt
from tests.support.annotation_setup import make_round_items

WORDS = [
    "river", "stone", "garden", "window", "letter", "market", "winter", "engine", "silver", "forest", "candle",
    "bridge", "pocket", "thunder", "meadow", "ladder", "butter", "planet", "shadow", "mirror", "basket", "rocket",
    "island", "pepper", "violin", "tunnel", "harbor", "feather", "castle", "marble", "orange", "pillow", "saddle",
    "lemon", "copper", "velvet", "anchor",
]  # fmt: skip
MARKER = "approved"
# Tiny random models need a large step size to learn in a few steps.
FAST = RewardTrainSettings(learning_rate=1e-3, epochs=3, batch_size=16, max_length=128, dtype="float32")


def toy_pairs(n: int, seed: int = 0) -> list[PreferencePair]:
    """Toy preference rule: the chosen response contains the marker word somewhere, the rejected one does not
    (both are random word salads of similar length)."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        chosen, rejected = ([rng.choice(WORDS) for _ in range(rng.randint(4, 10))] for _ in range(2))
        chosen.insert(rng.randint(0, len(chosen)), MARKER)
        prompt = f"Task {i}: write one line about {WORDS[i % len(WORDS)]}."
        pairs.append(PreferencePair(prompt, " ".join(chosen), " ".join(rejected)))
    return pairs


def marker_judge(prompt: str, response: str) -> float:
    """Gold scorer for the toy rule."""
    return float(MARKER in response.split())


@pytest.fixture(scope="module")
def toy():
    pairs = toy_pairs(96)
    train, heldout = split_pairs(pairs, FAST.heldout_fraction)
    return pairs, train, heldout


@pytest.fixture(scope="module")
def trained(tiny_models, toy, tmp_path_factory):
    pairs, _, _ = toy
    out = tmp_path_factory.mktemp("rm") / "rm-toy"
    return train_reward_model(
        pairs, base_dir=tiny_models.reward_dir, output_dir=out, settings=FAST, judge=marker_judge
    )


def test_trained_model_learns_rule_untrained_is_chance(trained, tiny_models, toy):
    pairs, train, heldout = toy
    assert (trained.n_train, trained.n_heldout) == (len(train), len(heldout))
    assert trained.n_heldout >= 10 and trained.n_train + trained.n_heldout == len(pairs)
    assert trained.steps == 3 * -(-len(train) // 16)
    untrained = evaluate_reward_model(tiny_models.reward_dir, heldout, max_length=128)
    # A random head is not a coin flip per pair: it has a fixed leaning about the marker token (here against
    # it), so "untrained" means: no better than chance.
    assert untrained.accuracy <= 0.6, untrained
    assert trained.heldout_accuracy >= 0.9, trained
    assert trained.train_accuracy >= 0.9
    # the judge orders every toy pair like the labels do, so agreement with it is held-out accuracy
    assert trained.n_judged == trained.n_heldout
    assert trained.judge_agreement == pytest.approx(trained.heldout_accuracy)
    # what the result says is what the checkpoint records, and a re-measure gives the same number
    assert read_reward_result(trained.checkpoint_dir) == trained
    again = evaluate_reward_model(trained.checkpoint_dir, heldout, max_length=128)
    assert again.accuracy == trained.heldout_accuracy


def test_checkpoint_reloads_in_reward_scorer_with_raw_logits(trained, toy):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    ckpt = trained.checkpoint_dir
    config = AutoConfig.from_pretrained(ckpt)
    assert config.num_labels == 1 and config.pad_token_id is not None
    assert not list(Path(ckpt.parent).glob(".*partial*")), "temp dir left behind"
    _, _, heldout = toy
    prompts, responses = [p.prompt for p in heldout], [p.chosen for p in heldout]
    scorer = RewardScorer(str(ckpt), max_length=128, batch_size=4)
    scores = scorer.score(prompts, responses)
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    ids = reward_training_dataset(tokenizer, heldout, 128)["chosen_ids"]
    assert ids == scorer._encode(prompts, responses)  # training saw what selection scores
    scorer.close()
    model = AutoModelForSequenceClassification.from_pretrained(ckpt).eval()
    with torch.inference_mode():
        direct = [model(input_ids=torch.tensor([row])).logits[0, 0].item() for row in ids]
    np.testing.assert_allclose(scores, direct, rtol=1e-4, atol=1e-4)
    assert (scores < 0).any() or (scores > 1).any()  # raw logits, not probabilities


def test_split_is_by_prompt_and_deterministic():
    pairs = [PreferencePair(f"prompt {i % 40}", f"good {i}", f"bad {i}") for i in range(200)]
    train, heldout = split_pairs(pairs, 0.2)
    assert (train, heldout) == split_pairs(list(pairs), 0.2)
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in heldout})
    assert 0.05 < len({p.prompt for p in heldout}) / 40 < 0.4
    assert split_pairs(pairs[:1], 0.2) == ([pairs[0]], [])  # one prompt: nothing to hold out
    assert split_pairs(pairs, 0.0) == (pairs, [])


def test_agreement_skips_judge_ties_and_unknown_prompts():
    pairs = [PreferencePair(p, c, r) for p, c, r in [("a", "x1", "x0"), ("b", "x0", "x1"), ("c", "x1", "x1")]]
    pairs.append(PreferencePair("unknown", "x1", "x0"))

    def judge(prompt, response):
        return None if prompt == "unknown" else float(response == "x1")

    share, n = agreement_with(judge, pairs, [2.0, 2.0, 5.0, 1.0], [1.0, 1.0, 0.0, 0.0])
    assert (share, n) == (0.5, 2)  # pair "c" is a judge tie, "unknown" has no judge opinion
    assert agreement_with(judge, pairs[2:], [1.0, 1.0], [0.0, 0.0]) == (None, 0)
    assert agreement_with(judge, pairs[:1], [1.0], [1.0]) == (0.0, 1)  # an RM tie orders nothing


def test_empty_pairs_and_existing_output_are_refused(tiny_models, tmp_path):
    out = tmp_path / "rm"
    with pytest.raises(ValueError, match="no preference pairs"):
        train_reward_model([], base_dir=tiny_models.reward_dir, output_dir=out, settings=FAST)
    assert not out.exists()
    out.mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        train_reward_model(toy_pairs(4), base_dir=tiny_models.reward_dir, output_dir=out, settings=FAST)
    assert list(out.iterdir()) == []
    with pytest.raises(ValueError, match=r"RewardTrainSettings\.heldout_fraction"):
        RewardTrainSettings(heldout_fraction=1.0)


def _project(tmp_path: Path, tiny_models, sqlite_url: str) -> tuple[list[str], Path]:
    data_dir = tmp_path / "data"
    config = tmp_path / "pvar-loop.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{data_dir}"\n[database]\nurl = "{sqlite_url}"\n'
        f'[reward]\nmodel = "{tiny_models.reward_dir}"\ndtype = "float32"\nmax_length = 128\nbatch_size = 8\n'
    )
    return ["--config", str(config)], data_dir


def test_cli_trains_on_decided_labels_and_reports(uow, tiny_models, tmp_path, sqlite_url, capsys):
    items = make_round_items(uow, 16)
    with uow() as s:
        for i, item in enumerate(s.scalars(select(AnnotationItem).order_by(AnnotationItem.id))):
            # a/b decisions train; a tie carries no preference and is left out
            item.status, item.decision = "decided", "tie" if i == 0 else "a"
        for prompt in s.scalars(select(Prompt)):
            # generation_a ("answer 2 ...") passes, generation_b ("answer 0 ...") fails
            prompt.meta = {"constraints": [{"kind": "no_word", "word": "0"}]}
    cli, data_dir = _project(tmp_path, tiny_models, sqlite_url)
    train = [*cli, "reward-model", "train", "--epochs", "2", "--lr", "1e-3"]
    assert main(train) == 0
    out = capsys.readouterr().out
    [ckpt] = list((data_dir / "reward-models").iterdir())
    assert ckpt.name.startswith("rm-") and (ckpt / "config.json").is_file()
    meta = json.loads((ckpt / REWARD_META_FILE).read_text())
    result = meta["result"]
    assert result["n_train"] + result["n_heldout"] == 15 and result["n_heldout"] >= 1
    assert meta["base"] == str(tiny_models.reward_dir) and meta["settings"]["epochs"] == 2
    assert f"held-out accuracy: {result['heldout_accuracy']:.3f}" in out
    assert f"verifier agreement: {result['judge_agreement']:.3f}" in out
    assert f'model = "{ckpt.resolve()}"' in out
    assert f"current [reward] model {tiny_models.reward_dir}: held-out accuracy" in out
    scores = RewardScorer(str(ckpt), max_length=128).score([items.prompts[items.item_ids[0]]], ["answer"])
    assert np.isfinite(scores).all()

    # unchanged labels and settings: the checkpoint is reused, nothing new is written
    assert main(train) == 0
    assert "reusing" in capsys.readouterr().out
    assert list((data_dir / "reward-models").iterdir()) == [ckpt]


def test_cli_without_decided_labels_writes_nothing(uow, tiny_models, tmp_path, sqlite_url, capsys):
    make_round_items(uow, 4)  # items exist, none decided
    cli, data_dir = _project(tmp_path, tiny_models, sqlite_url)
    assert main([*cli, "reward-model", "train"]) == 2
    assert "no decided a/b labels" in capsys.readouterr().err
    assert not (data_dir / "reward-models").exists()
