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
            samples_per_prompt=1,  # 64 prompts are power enough here; more samples only cost time
        )
    finally:
        scorer.close()
    assert result.win_rate.n == len(EVAL_PROMPTS)
    assert result.win_rate.ci_low <= 0.5 <= result.win_rate.ci_high
    # Independent seeds: the two sides really drew different samples.
    policy, reference = result.policy.texts, result.reference.texts
    assert sum(a != b for a, b in zip(policy, reference, strict=True)) > 50
    assert len({s for row in result.policy.scores for s in row}) > 1  # a continuous judge, not all ties
    # Same model: the mean-score interval of one side contains the other side's mean.
    assert result.policy_score.low <= result.reference_score.mean <= result.policy_score.high


def test_judge_may_be_a_plain_callable(tiny_models):
    prompts = EVAL_PROMPTS[:8]
    result = evaluate_policies(
        prompts,
        tiny_models.policy_dir,
        tiny_models.policy_dir,
        lambda p, r: float(len(r)),
        max_new_tokens=6,
        samples_per_prompt=3,
    )
    for side in (result.policy, result.reference):
        assert [len(row) for row in side.texts] == [3] * len(prompts) and len(side.seeds) == 3
        assert side.scores == [[float(len(t)) for t in row] for row in side.texts]
    means = [sum(len(t) for t in row) / 3 for row in result.policy.texts]
    assert result.policy_score.mean == pytest.approx(sum(means) / len(means))


def test_non_finite_judge_scores_are_rejected(tiny_models):
    with pytest.raises(ValueError, match="response #0"):
        evaluate_policies(
            EVAL_PROMPTS[:2],
            tiny_models.policy_dir,
            tiny_models.policy_dir,
            lambda p, r: float("nan"),
            max_new_tokens=2,
        )


def test_given_reference_samples_are_not_drawn_again_and_policy_seeds_are_shared(tiny_models, monkeypatch):
    """With the reference's samples given, only the policy is loaded; two evaluations with one seed draw the
    policy's samples with the same seeds (common random numbers), so the same model gives the same samples."""
    import loop.ml.generation as generation

    loaded = []
    real = generation.make_generator
    monkeypatch.setattr(
        generation, "make_generator", lambda *a, **k: loaded.append(k["model"]) or real(*a, **k)
    )
    prompts = EVAL_PROMPTS[:6]

    def run(reference=None):
        return evaluate_policies(prompts, tiny_models.policy_dir, tiny_models.policy_dir,
                                 lambda p, r: float(len(r)), max_new_tokens=5, seed=3,
                                 samples_per_prompt=2, reference=reference)  # fmt: skip

    first = run()
    assert len(loaded) == 2 and not first.reference_reused
    second = run(reference=first.reference)
    assert len(loaded) == 3 and second.reference_reused  # the policy only
    assert second.reference == first.reference
    assert second.policy == first.policy  # same seeds per sample index, same model: same draws
    assert first.policy.seeds != first.reference.seeds
    with pytest.raises(ValueError, match="6 prompts x 3 samples"):
        evaluate_policies(prompts, tiny_models.policy_dir, None, lambda p, r: 0.0, max_new_tokens=2,
                          samples_per_prompt=3, reference=first.reference)  # fmt: skip


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
        samples_per_prompt=2,
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
    knobs = {"max_new_tokens": 4, "batch_size": 8, "seed": 5, "samples_per_prompt": 1}
    plain = evaluate_policies(prompts, tiny_models.policy_dir, tiny_models.policy_dir, judge, **knobs)
    with caplog.at_level(logging.INFO, logger="loop.progress"):
        shown = evaluate_policies(
            prompts, tiny_models.policy_dir, tiny_models.policy_dir, judge, progress=True, **knobs
        )
    assert shown.policy.texts == plain.policy.texts
    assert shown.reference.texts == plain.reference.texts
    lines = [r.getMessage() for r in caplog.records if r.name == "loop.progress"]
    assert lines[:3] == [
        "evaluating: policy: 8/20 samples (40%), " + lines[0].split(", ")[-1],
        "evaluating: policy: 16/20 samples (80%), " + lines[1].split(", ")[-1],
        "evaluating: policy: 20/20 samples (100%), " + lines[2].split(", ")[-1],
    ]
