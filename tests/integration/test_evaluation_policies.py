"""Win-rate evaluation with real sampling, a real reward model and a rule verifier on the tiny models."""

import pytest

from loop.evaluation.verifier import verify
from loop.evaluation.win_rate import evaluate_policies
from loop.ml.dpo import PreferencePair, train_dpo
from loop.ml.generation import TransformersGenerator
from loop.ml.rewards import RewardScorer
from loop.ml.settings import TrainingSettings

EVAL_PROMPTS = [f"Task {i}: describe thing number {i} in a few words." for i in range(64)]


def test_reference_against_itself_is_a_coin_flip(tiny_models):
    """Different sampling seeds, same model: the reward model's verdicts are noise, so 0.5 lies in the CI."""
    scorer = RewardScorer(str(tiny_models.reward_dir))
    try:
        result = evaluate_policies(
            EVAL_PROMPTS,
            tiny_models.policy_dir,
            tiny_models.policy_dir,
            scorer,
            max_new_tokens=12,
            temperature=1.0,
            top_p=1.0,
            dtype="float32",
            seed=0,
        )
    finally:
        scorer.close()
    assert result.win_rate.n == len(EVAL_PROMPTS)
    assert result.win_rate.ci_low <= 0.5 <= result.win_rate.ci_high
    # Independent seeds: the two sides really drew different samples.
    assert sum(a != b for a, b in zip(result.policy_responses, result.reference_responses, strict=True)) > 50
    assert len(set(result.policy_scores)) > 1  # a continuous judge, not all ties


def test_judge_may_be_a_plain_callable(tiny_models):
    prompts = EVAL_PROMPTS[:8]
    result = evaluate_policies(
        prompts, tiny_models.policy_dir, tiny_models.policy_dir, lambda p, r: float(len(r)), max_new_tokens=6
    )
    assert result.policy_scores == [float(len(r)) for r in result.policy_responses]
    assert result.reference_scores == [float(len(r)) for r in result.reference_responses]


def test_non_finite_judge_scores_are_rejected(tiny_models):
    with pytest.raises(ValueError, match="prompt #0"):
        evaluate_policies(
            EVAL_PROMPTS[:2],
            tiny_models.policy_dir,
            tiny_models.policy_dir,
            lambda p, r: float("nan"),
            max_new_tokens=2,
        )


def test_reference_samples_are_drawn_once_per_process(tiny_models, monkeypatch):
    """Every round's evaluation samples the same reference on the same prompts: the second evaluation loads
    only the policy, and gets exactly the responses a fresh draw would give."""
    import loop.evaluation.win_rate as evaluation
    import loop.ml.generation as generation

    monkeypatch.setattr(evaluation, "_REFERENCE_CACHE", {})
    loaded = []
    real = generation.make_generator
    monkeypatch.setattr(
        generation, "make_generator", lambda *a, **k: loaded.append(k["model"]) or real(*a, **k)
    )
    prompts = EVAL_PROMPTS[:6]

    def run():
        return evaluate_policies(prompts, tiny_models.policy_dir, tiny_models.policy_dir,
                                 lambda p, r: float(len(r)), max_new_tokens=5, seed=3)  # fmt: skip

    first, second = run(), run()
    assert len(loaded) == 3  # policy, reference, policy
    assert first.reference_responses == second.reference_responses
    monkeypatch.setattr(evaluation, "_REFERENCE_CACHE", {})
    assert run().reference_responses == first.reference_responses  # a fresh draw: the same samples
    assert len(loaded) == 5


@pytest.mark.slow
def test_dpo_toward_a_verifier_beats_the_reference(tiny_models, tmp_path):
    """A rule verifier wants the word "Return"; DPO on pairs built from the policy's own samples teaches it.

    Each pair is a sample y of the tiny policy: chosen = "Return " + y (passes the verifier), rejected = y.
    The random tiny model has no notion of words, so this needs a full fine-tune at a high learning rate.
    """
    wants_return = [{"kind": "keyword", "word": "Return"}]

    def judge(prompt: str, response: str) -> float:
        return verify(response, wants_return)

    train_prompts = [f"Question {i}: explain item {i}. Use the word Return." for i in range(32)]
    generator = TransformersGenerator(
        str(tiny_models.policy_dir), temperature=1.0, top_p=1.0, max_new_tokens=8
    )
    try:
        samples = generator.generate(train_prompts, k=1, seed=0)
    finally:
        generator.close()
    pairs = [
        PreferencePair(p, "Return " + s[0].text.lstrip(), s[0].text)
        for p, s in zip(train_prompts, samples, strict=True)
    ]
    assert all(judge(p.prompt, p.chosen) > judge(p.prompt, p.rejected) for p in pairs)

    settings = TrainingSettings(learning_rate=1e-2, epochs=4, batch_size=8, lora=False, dtype="float32")
    trained = train_dpo(
        pairs,
        policy_dir=tiny_models.policy_dir,
        reference_dir=tiny_models.policy_dir,
        output_dir=tmp_path / "toward-return",
        settings=settings,
    )
    result = evaluate_policies(
        EVAL_PROMPTS,  # held out: none of these prompts was trained on
        trained.checkpoint_dir,
        tiny_models.policy_dir,
        judge,
        max_new_tokens=8,
        temperature=1.0,
        top_p=1.0,
        dtype="float32",
        seed=1,
    )
    assert result.win_rate.value > 0.5
    assert result.win_rate.ci_low > 0.5


def test_progress_logs_lines_off_a_terminal_and_keeps_the_samples(tiny_models, monkeypatch, caplog):
    """Issue 14 point 10: with progress on and stderr not a terminal (pytest captures it), evaluation logs
    periodic progress lines; feeding the generator batch by batch draws exactly the samples of one call."""
    import logging

    import loop.progress

    monkeypatch.setattr(loop.progress, "LOG_EVERY_S", 0.0)  # a line per batch
    prompts, judge = EVAL_PROMPTS[:20], (lambda p, r: float(len(r)))
    knobs = {"max_new_tokens": 4, "batch_size": 8, "seed": 5}
    plain = evaluate_policies(prompts, tiny_models.policy_dir, tiny_models.policy_dir, judge, **knobs)
    with caplog.at_level(logging.INFO, logger="loop.progress"):
        shown = evaluate_policies(
            prompts, tiny_models.policy_dir, tiny_models.policy_dir, judge, progress=True, **knobs
        )
    assert shown.policy_responses == plain.policy_responses
    lines = [r.getMessage() for r in caplog.records if r.name == "loop.progress"]
    assert lines[:3] == [
        "evaluating: policy: 8/20 prompts (40%), " + lines[0].split(", ")[-1],
        "evaluating: policy: 16/20 prompts (80%), " + lines[1].split(", ")[-1],
        "evaluating: policy: 20/20 prompts (100%), " + lines[2].split(", ")[-1],
    ]
