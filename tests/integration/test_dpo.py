"""DPO training on the tiny random Llama: parameters move, checkpoints reload, the DPO margin rises."""

import dataclasses
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loop.config import DPO_LOSS_TYPES
from loop.ml.dpo import (
    TRAIN_META_FILE,
    PreferencePair,
    TrainingError,
    dpo_reward_margin,
    read_train_result,
    train_dpo,
    training_data_hash,
)
from loop.ml.settings import TrainingSettings

TOPICS = ["lists", "tuples", "sets", "files", "loops", "classes", "strings", "numbers"]
PAIRS = [
    PreferencePair(
        prompt=f"Question {i}: how do {topic} work in Python?",
        chosen=f"The {topic} object keeps its items in order and you can iterate over it.",
        rejected=f"I do not know anything about {topic}, sorry.",
    )
    for i, topic in enumerate(TOPICS * 4)
]
# Tests use a larger learning rate than the default so the tiny random model moves in a few steps.
FAST = TrainingSettings(learning_rate=5e-5, epochs=2, batch_size=8, lora=False, dtype="float32", seed=0)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(model_dir) / "model.safetensors"))


def changed_tensors(before: Path, after: Path) -> set[str]:
    a, b = weights(before), weights(after)
    assert a.keys() == b.keys()
    return {name for name in a if not torch.equal(a[name], b[name])}


@pytest.fixture(scope="module")
def full_run(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "round-1"
    result = train_dpo(
        PAIRS,
        policy_dir=tiny_models.policy_dir,
        reference_dir=tiny_models.policy_dir,
        output_dir=out,
        settings=FAST,
    )
    return result


def test_training_changes_parameters(full_run, tiny_models):
    changed = changed_tensors(tiny_models.policy_dir, full_run.checkpoint_dir)
    total = len(weights(tiny_models.policy_dir))
    assert len(changed) > total // 2, f"only {len(changed)} of {total} tensors changed"


def test_checkpoint_reloads_with_transformers(full_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(full_run.checkpoint_dir)
    tokenizer = AutoTokenizer.from_pretrained(full_run.checkpoint_dir)
    assert model.dtype == torch.float32
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": PAIRS[0].prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids.shape[1]


def test_dpo_margin_rises_from_zero(full_run, tiny_models):
    before = dpo_reward_margin(tiny_models.policy_dir, tiny_models.policy_dir, PAIRS, beta=FAST.beta)
    after = dpo_reward_margin(full_run.checkpoint_dir, tiny_models.policy_dir, PAIRS, beta=FAST.beta)
    assert abs(before) < 1e-6
    assert after > 0.2


def test_result_is_recorded_in_the_checkpoint(full_run):
    assert full_run.steps == math.ceil(len(PAIRS) / FAST.batch_size) * FAST.epochs
    assert 0.0 < full_run.train_loss < math.log(2)  # below the loss at margin 0
    assert full_run.data_hash == training_data_hash(PAIRS)
    assert full_run.seconds > 0
    assert read_train_result(full_run.checkpoint_dir) == full_run
    assert (full_run.checkpoint_dir / TRAIN_META_FILE).is_file()


def test_existing_checkpoint_is_never_overwritten(full_run, tiny_models):
    before = sorted(p.name for p in full_run.checkpoint_dir.parent.iterdir())
    stamp = (full_run.checkpoint_dir / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="already exists"):
        train_dpo(
            PAIRS,
            policy_dir=tiny_models.policy_dir,
            reference_dir=tiny_models.policy_dir,
            output_dir=full_run.checkpoint_dir,
            settings=FAST,
        )
    assert (full_run.checkpoint_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in full_run.checkpoint_dir.parent.iterdir()) == before  # no partial dirs left


def test_empty_pairs_raise(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="no preference pairs"):
        train_dpo(
            [],
            policy_dir=tiny_models.policy_dir,
            reference_dir=tiny_models.policy_dir,
            output_dir=tmp_path / "x",
            settings=FAST,
        )
    assert not (tmp_path / "x").exists()


def test_bad_settings_raise_naming_the_field():
    with pytest.raises(ValueError, match=r"TrainingSettings\.learning_rate"):
        dataclasses.replace(FAST, learning_rate=0)
    with pytest.raises(ValueError, match=r"TrainingSettings\.loss_type"):
        TrainingSettings(loss_type="not-a-loss")


def test_missing_policy_dir_is_wrapped(tiny_models, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(TrainingError, match="no-such-model"):
        train_dpo(
            PAIRS, policy_dir=missing, reference_dir=missing, output_dir=tmp_path / "out", settings=FAST
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written


def test_lora_trains_merges_and_reloads(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    settings = dataclasses.replace(FAST, lora=True, learning_rate=5e-4)
    result = train_dpo(
        PAIRS,
        policy_dir=tiny_models.policy_dir,
        reference_dir=tiny_models.policy_dir,
        output_dir=tmp_path / "lora",
        settings=settings,
    )
    assert not (result.checkpoint_dir / "adapter_config.json").exists()  # merged into a plain model
    changed = changed_tensors(tiny_models.policy_dir, result.checkpoint_dir)
    assert changed, "LoRA training changed no weights"
    # all-linear LoRA touches only the projection matrices inside the decoder layers.
    assert all(name.endswith("proj.weight") and ".layers." in name for name in changed), sorted(changed)
    model = AutoModelForCausalLM.from_pretrained(result.checkpoint_dir)
    assert not hasattr(model, "peft_config")
    assert dpo_reward_margin(result.checkpoint_dir, tiny_models.policy_dir, PAIRS, beta=settings.beta) > 0.1


def test_bf16_autocast_trains_and_saves_fp32(tiny_models, tmp_path):
    settings = dataclasses.replace(FAST, dtype="bfloat16", epochs=1)
    result = train_dpo(
        PAIRS,
        policy_dir=tiny_models.policy_dir,
        reference_dir=tiny_models.policy_dir,
        output_dir=tmp_path / "bf16",
        settings=settings,
    )
    assert changed_tensors(tiny_models.policy_dir, result.checkpoint_dir)
    assert all(t.dtype == torch.float32 for t in weights(result.checkpoint_dir).values())


@pytest.mark.parametrize(
    "variant", [{}, {"precompute_ref_log_probs": True}, {"lora": True}], ids=["full", "precompute", "lora"]
)
def test_warm_start_is_scored_against_the_reference(full_run, tiny_models, tmp_path, variant):
    """Round 2 starts from round 1's checkpoint but keeps the initial policy as reference.

    One step over all pairs makes train_loss the loss before any update, -log sigmoid(margin) averaged over
    pairs: ln 2 if the reference were the warm-start policy itself, lower against the true reference.
    """
    settings = dataclasses.replace(FAST, epochs=1, batch_size=len(PAIRS), **variant)
    against_initial = train_dpo(
        PAIRS,
        policy_dir=full_run.checkpoint_dir,
        reference_dir=tiny_models.policy_dir,
        output_dir=tmp_path / "vs-initial",
        settings=settings,
    )
    against_itself = train_dpo(
        PAIRS,
        policy_dir=full_run.checkpoint_dir,
        reference_dir=full_run.checkpoint_dir,
        output_dir=tmp_path / "vs-itself",
        settings=settings,
    )
    assert against_initial.steps == against_itself.steps == 1
    assert against_itself.train_loss == pytest.approx(math.log(2), abs=1e-4)
    assert against_initial.train_loss < math.log(2) - 0.05


def test_loss_types_match_installed_trl():
    """Our list must stay in step with the TRL version pinned in pyproject.toml."""
    from trl import DPOConfig

    help_text = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    for name in DPO_LOSS_TYPES:
        assert f"'{name}'" in help_text


def test_completion_logprobs_do_not_depend_on_batching(tiny_models):
    from loop.ml.logprobs import completion_logprobs

    prompts = [p.prompt for p in PAIRS[:6]]
    completions = [p.chosen if i % 2 else p.rejected for i, p in enumerate(PAIRS[:6])]
    one_by_one = completion_logprobs(tiny_models.policy_dir, prompts, completions, batch_size=1)
    batched = completion_logprobs(tiny_models.policy_dir, prompts, completions, batch_size=4)
    assert one_by_one == pytest.approx(batched, abs=1e-4)
    assert (one_by_one < 0).all()
    # More completion tokens, each near-uniform over the vocabulary (~ -7.6 nats): a much lower total.
    longer = completion_logprobs(tiny_models.policy_dir, prompts[:1], [completions[0] + " and more words"])
    assert longer[0] < one_by_one[0]


KILLED_TRAINING = """
import sys
from loop.ml.dpo import PreferencePair, train_dpo
from loop.ml.settings import TrainingSettings
pairs = [PreferencePair(prompt=f"q{i}", chosen="a good answer", rejected="no") for i in range(32)]
settings = TrainingSettings(learning_rate=5e-5, epochs=10_000, batch_size=8, lora=False, dtype="float32")
train_dpo(pairs, policy_dir=sys.argv[1], reference_dir=sys.argv[1], output_dir=sys.argv[2], settings=settings)
"""


def test_the_next_training_removes_what_a_killed_one_left(tiny_models, tmp_path):
    out = tmp_path / "checkpoints" / "round-1"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_TRAINING, str(tiny_models.policy_dir), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(out.parent.glob(".round-1.partial-*/trainer")) and time.monotonic() < deadline:
            assert child.poll() is None, "the training ended before it could be killed"
            time.sleep(0.5)
        time.sleep(2)  # mid-training
    finally:
        child.kill()
        child.wait()
    [left] = list(out.parent.glob(".round-1.partial-*"))
    assert (left / "trainer").is_dir() and not out.exists()
    old = time.time() - 3600  # (scratch dirs younger than a minute are spared: one may be being created)
    os.utime(left, (old, old))
    result = train_dpo(
        PAIRS,
        policy_dir=tiny_models.policy_dir,
        reference_dir=tiny_models.policy_dir,
        output_dir=out,
        settings=FAST,
    )
    assert result.checkpoint_dir == out and (out / TRAIN_META_FILE).is_file()
    assert [p.name for p in out.parent.iterdir()] == ["round-1"]  # the killed run's scratch dir is gone
