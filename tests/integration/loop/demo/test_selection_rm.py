"""Issue 21: the full demo's seed-trained selection reward model is trained once per recipe (seed pool, settings,
models, code) into the model cache; a repeat demo reuses it, a changed input retrains it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

from loop.demo import selection_rm
from loop.demo.run import FULL
from loop.demo.selection_rm import selection_reward_model, selection_rm_dir, selection_rm_recipe
from loop.demo.world import write_demo_prompts

# The full profile's recipe on the tiny models: short samples, float32, and a bot that picks a side (the tiny
# random policy's answers tie on the verifier).
TINY = replace(FULL, max_new_tokens=8, dtype="float32", allow_ties=False)


def test_a_repeat_reuses_the_cached_model_and_a_changed_seed_pool_retrains(tmp_path, tiny_models):
    seed_file = write_demo_prompts(tmp_path / "prompts", n_train=1, n_eval=1, n_seed=8)[2]
    cache, said = tmp_path / "cache", []
    models = (tiny_models.policy_dir, tiny_models.reward_dir)

    first, summary = selection_reward_model(TINY, cache, seed_file, *models, said.append)
    assert first.is_relative_to(cache) and (first / "model.safetensors").is_file()
    assert "trained by an earlier demo" not in summary
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    again, summary = selection_reward_model(TINY, cache, seed_file, *models, said.append)
    assert (
        again == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    )  # reused, not retrained
    assert "trained by an earlier demo" in summary

    rows = [json.loads(line) for line in seed_file.read_text().splitlines()]
    rows[-1]["prompt"] += " Answer politely."
    seed_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    changed, summary = selection_reward_model(TINY, cache, seed_file, *models, said.append)
    assert changed != first and (changed / "model.safetensors").is_file()  # a new recipe: trained anew
    assert "trained by an earlier demo" not in summary


def test_the_recipe_changes_with_each_input(tmp_path, tiny_models, monkeypatch):
    seed_file = write_demo_prompts(tmp_path / "prompts", n_train=1, n_eval=1, n_seed=4)[2]
    models = (tiny_models.policy_dir, tiny_models.reward_dir)
    cache = tmp_path / "cache"

    def where(p=TINY, policy=models[0], backend="auto"):
        return selection_rm_dir(cache, p, selection_rm_recipe(p, seed_file, policy, models[1], backend))

    base = where()
    assert where() == base and base.is_relative_to(cache)
    assert where(p=replace(TINY, k=2)) != base  # a sampling setting
    another = shutil.copytree(models[0], tmp_path / "another-policy")
    assert where(policy=another) != base  # a model
    # the engine "auto" resolves to (the tiny policy: transformers): vLLM draws other samples for the same seed
    assert where(backend="transformers") == base and where(backend="vllm") != base
    monkeypatch.setattr(selection_rm, "RM_LEARNING_RATE", 1e-3)
    assert where() != base  # a training setting
    monkeypatch.undo()
    monkeypatch.setattr(selection_rm, "RM_LIBRARIES", (*selection_rm.RM_LIBRARIES, "peft"))
    assert where() != base  # the code version
