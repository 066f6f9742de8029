"""Bootstrapping the selection reward model from a seed pool: sampling with the (tiny) policy, the annotator
comparing every pair of distinct samples, TRL RewardTrainer on the decided pairs, labels written alongside."""

from __future__ import annotations

import json

import pytest

from loop.demo.seed_reward_model import (
    SampleSettings,
    SeedPoolError,
    bootstrap_reward_model,
    label_seed_pool,
    read_seed_prompts,
)
from loop.ml.reward_model import read_reward_result
from loop.ml.settings import RewardTrainSettings

SAMPLING = SampleSettings(k=4, max_new_tokens=8, dtype="float32", temperature=1.0, top_p=1.0)
FAST = RewardTrainSettings(learning_rate=1e-3, epochs=1, batch_size=8, max_length=64, dtype="float32")


def longer_wins(prompt: str, a: str, b: str) -> str:
    return "tie" if len(a) == len(b) else ("a" if len(a) > len(b) else "b")


def test_every_distinct_pair_is_compared_and_ties_are_dropped(tiny_models):
    prompts = [f"Say something about topic {i}." for i in range(6)]
    labels = label_seed_pool(prompts, str(tiny_models.policy_dir), longer_wins, SAMPLING)
    assert labels.prompts == 6 and labels.identical + labels.ties < labels.comparisons
    assert labels.comparisons <= 6 * 6  # at most C(4, 2) per prompt
    assert len(labels.pairs) == labels.comparisons - labels.ties
    assert all(len(p.chosen) > len(p.rejected) for p in labels.pairs)
    again = label_seed_pool(prompts, str(tiny_models.policy_dir), longer_wins, SAMPLING)
    assert again.pairs == labels.pairs  # seeded: same samples, same pairs, same sides


def test_bootstrap_trains_a_reward_model_and_keeps_the_labels(tmp_path, tiny_models):
    seed_file = tmp_path / "seed.jsonl"
    seed_file.write_text("".join(json.dumps({"prompt": f"Write about item {i}."}) + "\n" for i in range(10)))
    out = tmp_path / "rms" / "seed-rm"
    labels, result = bootstrap_reward_model(
        seed_file,
        policy=str(tiny_models.policy_dir),
        base=str(tiny_models.reward_dir),
        out_dir=out,
        annotate=longer_wins,
        gold=lambda prompt, response: float(len(response)),
        sampling=SAMPLING,
        training=FAST,
    )
    assert result.n_train + result.n_heldout == len(labels.pairs) > 0
    assert read_reward_result(out).data_hash == result.data_hash
    written = [
        json.loads(x) for x in (tmp_path / "rms" / "seed-rm-seed-labels.jsonl").read_text().splitlines()
    ]
    assert [(w["chosen"], w["rejected"]) for w in written] == [(p.chosen, p.rejected) for p in labels.pairs]


def test_an_annotator_that_ties_everything_trains_nothing(tmp_path, tiny_models):
    seed_file = tmp_path / "seed.jsonl"
    seed_file.write_text(json.dumps({"prompt": "Write about rain."}) + "\n")
    with pytest.raises(SeedPoolError, match="decided no seed pair"):
        bootstrap_reward_model(
            seed_file,
            policy=str(tiny_models.policy_dir),
            base=str(tiny_models.reward_dir),
            out_dir=tmp_path / "rm",
            annotate=lambda *_: "tie",
            gold=None,
            sampling=SAMPLING,
            training=FAST,
        )
    assert not (tmp_path / "rm").exists() and not list(tmp_path.glob("*seed-labels*"))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json\n", r"seed.jsonl: line 1: malformed JSON"),
        ('{"prompt": ""}\n', r"seed.jsonl: line 1: expected a non-empty \"prompt\""),
        ("\n", "no seed prompts"),
    ],
)
def test_bad_seed_files_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "seed.jsonl"
    path.write_text(text)
    with pytest.raises(SeedPoolError, match=match):
        read_seed_prompts(path)
