"""The full demo's selection reward model, trained once per recipe into the model cache.

The demo trains it on bot labels of the seed pool (loop.demo.seed_reward_model), which takes minutes; training is
seeded, so the same seed pool, settings, models and code train the same model. The model cache keeps one
directory per content hash of all of these (selection_rm_recipe): a later demo reuses it, any change retrains.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

Profile = Any  # loop.demo.run.Profile (run imports this module)

# The selection RM's training: the seed run before round 1 and every refresh after a round ([reward] refresh).
RM_LEARNING_RATE, RM_EPOCHS = 1e-4, 4


def verifier_judge(db_prompts: dict[str, list], seed: int, allow_ties: bool = True):
    """The simulated annotator: prefers the response the verifier scores higher (Bradley-Terry noise); equal
    scores are a tie, or a coin flip when ties are not allowed."""
    from annotation.simulated.judges import RewardJudge
    from loop.evaluation.verifier import verify

    def gold(prompt: str, response: str) -> float:
        constraints = db_prompts.get(prompt)
        return 4.0 * verify(response, constraints) if constraints else 0.0

    return RewardJudge(gold, seed=seed, temperature=1.0, tie_margin=1e-9 if allow_ties else 0.0)


# The code whose behaviour the selection RM depends on: a change to any of these files retrains it (so do the
# versions of the libraries below); the rest of the code base leaves the cached model valid.
RM_CODE_FILES = (
    "loop/demo/selection_rm.py",
    "loop/demo/seed_reward_model.py",
    "loop/ml/generation.py",
    "loop/ml/sampling.py",
    "loop/ml/reward_model.py",
    "loop/ml/trl_backend.py",
    "loop/ml/loading.py",
    "loop/evaluation/verifier.py",
    "annotation/simulated/judges.py",
)
RM_LIBRARIES = ("torch", "transformers", "trl", "numpy")


def rm_code_version() -> str:
    """sha256 over the selection RM's code files and the versions of the libraries that train it."""
    from importlib.metadata import version

    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for name in RM_CODE_FILES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    for lib in RM_LIBRARIES:
        digest.update(f"{lib}=={version(lib)}\n".encode())
    return digest.hexdigest()


def selection_rm_recipe(p: Profile, seed_file: Path, policy: Path, base: Path, backend: str = "auto") -> dict:
    """Everything the seed-trained selection RM is a function of: the profile, the seed pool's bytes, the
    sampling settings (with the engine "auto" resolves to: vLLM and transformers draw different samples for the
    same seed), the training settings, the two models and the code version (training is seeded, so the same
    recipe trains the same model)."""
    return {
        "profile": asdict(p),
        "seed_pool": hashlib.sha256(Path(seed_file).read_bytes()).hexdigest(),
        "sampling": asdict(_seed_sampling(p, policy, backend)),
        "training": asdict(_seed_training()),
        "models": [Path(policy).name, Path(base).name],
        "code": rm_code_version(),
    }


def selection_rm_dir(cache: Path, p: Profile, recipe: dict) -> Path:
    """Where the full demo's selection reward model lives: in the model cache, like the models the demo's config
    points at (the next demo empties its data dir, not the cache), one directory per recipe's content hash."""
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return cache / "demo-selection-rm" / f"{p.name}-{key}"


def _seed_sampling(p: Profile, policy: Path, backend: str):
    from loop.demo.seed_reward_model import SampleSettings
    from loop.ml.generation import resolve_backend

    engine = resolve_backend(backend, str(policy))
    return SampleSettings(k=p.k, max_new_tokens=p.max_new_tokens, dtype=p.dtype, backend=engine)


def _seed_training():
    from loop.ml.settings import RewardTrainSettings

    return RewardTrainSettings(
        learning_rate=RM_LEARNING_RATE,
        epochs=RM_EPOCHS,
        batch_size=16,
        max_length=256,
        dtype="float32",
        seed=0,
    )


def selection_reward_model(
    p: Profile, cache: Path, seed_file: Path, policy: Path, base: Path, say, *, backend: str = "auto"
):
    """(directory, summary) of the selection RM: trained once per recipe into the model cache; a later demo with
    the same recipe (selection_rm_recipe) reuses it, a changed seed pool, setting, model or code retrains."""
    from loop.demo.seed_reward_model import bootstrap_reward_model, read_seed_prompts
    from loop.evaluation.verifier import gold_by_prompt

    recipe = selection_rm_recipe(p, seed_file, policy, base, backend)
    out_dir = selection_rm_dir(cache, p, recipe)
    summary_file = out_dir.parent / f"{out_dir.name}-summary.txt"
    if out_dir.exists():  # published atomically by an earlier demo: a complete model
        summary = summary_file.read_text().strip() if summary_file.exists() else "selection RM"
        say(f"[demo] selection reward model from the model cache ({out_dir}; trained by an earlier demo)")
        return out_dir, f"{summary} (trained by an earlier demo, kept in {out_dir.parent})"
    constraints = {r["prompt"]: r["metadata"]["constraints"] for r in read_seed_prompts(seed_file)}
    say(f"[demo] training the selection reward model on bot labels of {len(constraints)} seed prompts ...")
    labels, result = bootstrap_reward_model(
        seed_file,
        policy=str(policy),
        base=str(base),
        out_dir=out_dir,
        annotate=verifier_judge(constraints, seed=0, allow_ties=p.allow_ties),
        gold=gold_by_prompt(constraints),
        sampling=_seed_sampling(p, policy, backend),
        training=_seed_training(),
    )
    agree = "n/a" if result.judge_agreement is None else f"{result.judge_agreement:.3f}"
    held = "n/a" if result.heldout_accuracy is None else f"{result.heldout_accuracy:.3f}"
    summary = (
        f"selection RM: {labels.prompts} seed prompts, {labels.comparisons} bot comparisons -> "
        f"{len(labels.pairs)} decided pairs ({labels.ties} ties; {labels.identical} prompts with identical "
        f"samples); held-out accuracy {held}, agreement with the verifier {agree} on "
        f"{result.n_judged} held-out pairs; {result.steps} steps in {result.seconds:.0f} s"
    )
    summary_file.write_text(summary + "\n")
    say(f"[demo] {summary}")
    return Path(result.checkpoint_dir), summary
