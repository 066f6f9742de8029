"""Judge-agnostic evaluation: head-to-head win rate of a policy against the reference and both sides' mean
judge score, each with a bootstrap CI over prompts.

Each side samples samples_per_prompt responses per eval prompt; sample i is drawn with a seed that depends on
(evaluation seed, side, i) only (sample_seeds), so every checkpoint evaluated with one seed draws its i-th
samples with the same seeds (common random numbers across checkpoints), while the policy and the reference
draw independently of each other.

A judge says how good a response is, higher is better: a rule verifier's 0/1 or a reward model's raw score.
It is either a callable judge(prompt, response) -> float or a batch scorer with score(prompts, responses)
(e.g. loop.ml.rewards.RewardScorer, called once per side). Only the per-prompt comparison of the two scores
matters, so judges need no calibration.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from loop.config import Config, EvaluationConfig, GenerationConfig, PolicyConfig
from loop.evaluation.paired import Interval, mean_interval
from storage.types import storable_text


class BatchJudge(Protocol):
    def score(self, prompts: list[str], responses: list[str]) -> Sequence[float]: ...


Judge = Callable[[str, str], float] | BatchJudge


@dataclass(frozen=True)
class WinRate:
    """Mean per-prompt outcome (win 1, tie 0.5, loss 0) and its percentile-bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int


def win_rate(
    policy_scores: Sequence[float] | Sequence[Sequence[float]],
    reference_scores: Sequence[float] | Sequence[Sequence[float]],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    tie_tolerance: float = 0.0,
) -> WinRate:
    """Win rate of the policy over the reference from paired judge scores: one per prompt, or a row per prompt
    of samples (policy sample i meets reference sample i; a prompt's outcome is the mean over its samples).

    Prompts are the resampling unit of the bootstrap. Scores within tie_tolerance of each other are a tie.
    """
    policy = np.asarray(policy_scores, dtype=float)
    reference = np.asarray(reference_scores, dtype=float)
    if policy.ndim not in (1, 2) or policy.shape != reference.shape:
        raise ValueError(
            f"win_rate: policy_scores and reference_scores must be 1-D (prompts) or 2-D (prompts x samples) "
            f"and the same shape, got shapes {policy.shape} and {reference.shape}"
        )
    if policy.size == 0:
        raise ValueError("win_rate: no scores given (need at least one prompt)")
    if not (np.isfinite(policy).all() and np.isfinite(reference).all()):
        raise ValueError("win_rate: scores must be finite (a judge returned NaN or inf)")
    if n_bootstrap < 1:
        raise ValueError(f"win_rate: n_bootstrap must be >= 1, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"win_rate: confidence must be in (0, 1), got {confidence}")
    if tie_tolerance < 0:
        raise ValueError(f"win_rate: tie_tolerance must be >= 0, got {tie_tolerance}")

    diff = policy - reference
    outcomes = np.where(np.abs(diff) <= tie_tolerance, 0.5, np.where(diff > 0, 1.0, 0.0))
    if outcomes.ndim == 2:
        outcomes = outcomes.mean(axis=1)
    return outcome_win_rate(outcomes, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)


def outcome_win_rate(
    outcomes: Sequence[float], *, n_bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95
) -> WinRate:
    """Mean of per-prompt outcomes in [0, 1] (win 1, tie 0.5, loss 0; a human evaluation's mean vote) with
    its percentile-bootstrap interval, prompts as the resampling unit."""
    outcomes = np.asarray(outcomes, dtype=float)
    if outcomes.ndim != 1 or outcomes.size == 0:
        raise ValueError(f"outcome_win_rate: need a non-empty 1-D sequence, got shape {outcomes.shape}")
    rng = np.random.default_rng(seed)
    n = outcomes.size
    means = outcomes[rng.integers(0, n, size=(n_bootstrap, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    value = float(outcomes.mean())
    # Quantiles of a discrete bootstrap can miss the point estimate by float rounding; keep value inside.
    return WinRate(value=value, ci_low=min(float(low), value), ci_high=max(float(high), value), n=int(n))


@dataclass(frozen=True)
class SideSamples:
    """One model's samples on the eval prompts: texts[p][i] is prompt p's sample i, drawn with seeds[i],
    n_tokens[p][i] long, judged scores[p][i]."""

    texts: list[list[str]]
    n_tokens: list[list[int]]
    scores: list[list[float]]
    seeds: list[int]

    @property
    def per_prompt_means(self) -> list[float]:
        return [sum(row) / len(row) for row in self.scores]

    @property
    def mean(self) -> float:
        means = self.per_prompt_means
        return sum(means) / len(means)


@dataclass(frozen=True)
class PolicyEvaluation:
    """Samples, judge scores, win rate and mean scores of one policy-vs-reference evaluation."""

    win_rate: WinRate
    policy_score: Interval  # mean judge score of the policy's samples, bootstrap over prompts
    reference_score: Interval
    prompts: list[str]
    policy: SideSamples
    reference: SideSamples
    reference_reused: bool  # the reference's samples were given (already sampled and judged), not drawn


# Config defaults of the knobs evaluate_policies takes (one source of truth: loop.config).
_EVALUATION, _GENERATION, _POLICY = EvaluationConfig(), GenerationConfig(), PolicyConfig()

SIDES = ("policy", "reference")


def sample_seeds(seed: int, side: str, n: int) -> list[int]:
    """The generator seed of each sample index of one side: a 63-bit hash of (evaluation seed, side, index),
    so sample i does not depend on how many samples are drawn, and every checkpoint's policy side shares
    them (common random numbers), while the reference side draws independently."""
    if side not in SIDES:
        raise ValueError(f"sample_seeds: side must be one of {SIDES}, got {side!r}")
    return [
        int.from_bytes(hashlib.sha256(f"{seed}:{side}:{i}".encode()).digest()[:8], "big") >> 1
        for i in range(n)
    ]


def evaluate_policies(
    eval_prompts: Sequence[str],
    policy_dir: str | os.PathLike,
    reference_dir: str | os.PathLike | None,
    judge: Judge,
    *,
    samples_per_prompt: int = _EVALUATION.samples_per_prompt,
    max_new_tokens: int = _EVALUATION.max_new_tokens,
    temperature: float = _GENERATION.temperature,
    top_p: float = _GENERATION.top_p,
    batch_size: int = _GENERATION.batch_size,
    dtype: str = _POLICY.dtype,
    backend: str = _GENERATION.backend,
    device: str = "cpu",
    seed: int = _EVALUATION.seed,
    n_bootstrap: int = _EVALUATION.n_bootstrap,
    reference: SideSamples | None = None,
    progress: bool = False,
) -> PolicyEvaluation:
    """Sample samples_per_prompt responses per prompt from each model, judge them all, and return the
    policy's win rate (sample i against sample i) and both sides' mean scores.

    The defaults are the config's ([evaluation], [generation] sampling, [policy] dtype), as
    loop.rounds.evaluating passes them. `reference`, when given, is the reference's samples from an earlier
    evaluation made the same way: the reference is then neither loaded nor judged (reference_dir unused).

    Policy and reference sample with independent seeds (see sample_seeds), so evaluating the reference
    against itself measures pure sampling noise: its CI should contain 0.5. With `progress`, each side shows
    a bar on a terminal or a periodic log line (loop.progress), without changing the samples.
    """
    prompts = list(eval_prompts)
    if not prompts:
        raise ValueError("evaluate_policies: no evaluation prompts given")
    if samples_per_prompt < 1:
        raise ValueError(f"evaluate_policies: samples_per_prompt must be >= 1, got {samples_per_prompt}")
    knobs = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "batch_size": batch_size,
        "dtype": dtype,
        "backend": backend,
        "device": device,
    }
    policy_seeds = sample_seeds(seed, "policy", samples_per_prompt)
    policy = _sample_side(policy_dir, prompts, judge, policy_seeds, knobs, progress and "evaluating: policy")
    reused = reference is not None
    if reference is None:
        if reference_dir is None:
            raise ValueError("evaluate_policies: give reference_dir or the reference's samples")
        seeds = sample_seeds(seed, "reference", samples_per_prompt)
        reference = _sample_side(
            reference_dir, prompts, judge, seeds, knobs, progress and "evaluating: reference"
        )
    elif len(reference.scores) != len(prompts) or any(len(r) != samples_per_prompt for r in reference.scores):
        raise ValueError(
            f"evaluate_policies: the given reference samples are not {len(prompts)} prompts x "
            f"{samples_per_prompt} samples"
        )
    return PolicyEvaluation(
        win_rate=win_rate(policy.scores, reference.scores, n_bootstrap=n_bootstrap, seed=seed),
        policy_score=mean_interval(policy.per_prompt_means, n_boot=n_bootstrap, seed=seed),
        reference_score=mean_interval(reference.per_prompt_means, n_boot=n_bootstrap, seed=seed),
        prompts=prompts,
        policy=policy,
        reference=reference,
        reference_reused=reused,
    )


def _sample_side(
    model_dir, prompts: list[str], judge: Judge, seeds: list[int], knobs: dict, progress: str | bool = False
) -> SideSamples:
    """len(seeds) samples per prompt (one generate call per sample index and seed), judged in one pass.

    With `progress` (the bar's label) the prompts go to the transformers generator a batch at a time, the very
    batches it would cut itself, so the samples are the same with or without it; vLLM schedules its own
    batches (per-prompt seeds): one call per seed."""
    from loop.ml.generation import make_generator, resolve_backend
    from loop.progress import progress as progress_bar

    backend = resolve_backend(knobs["backend"], str(model_dir))
    generator = make_generator(backend, model=str(model_dir), **_without(knobs, "backend"))
    step = knobs["batch_size"] if progress and backend == "transformers" else len(prompts)
    draws = []  # draws[i][p][0]: sample i of prompt p
    try:
        total = len(prompts) * len(seeds)
        with progress_bar(total, str(progress), "sample", enabled=bool(progress)) as bar:
            for s in seeds:
                drawn = []
                for start in range(0, len(prompts), max(step, 1)):
                    chunk = prompts[start : start + step]
                    drawn += generator.generate(chunk, k=1, seed=s)
                    bar.update(len(chunk))
                draws.append(drawn)
    finally:
        generator.close()  # free one model before the other is loaded
    samples = [[draws[i][p][0] for i in range(len(seeds))] for p in range(len(prompts))]
    # judged as they will be stored, so a stored sample's score is its text's
    texts = [[storable_text(s.text) for s in row] for row in samples]
    n = len(seeds)
    flat_scores = _judge_all(
        judge,
        [p for p in prompts for _ in range(n)],
        [t for row in texts for t in row],
    )
    return SideSamples(
        texts=texts,
        n_tokens=[[s.n_tokens for s in row] for row in samples],
        scores=[flat_scores[p * n : (p + 1) * n] for p in range(len(prompts))],
        seeds=list(seeds),
    )


def _without(knobs: dict, key: str) -> dict:
    return {k: v for k, v in knobs.items() if k != key}


def sampling_knobs(cfg: Config) -> dict:
    """How evaluation samples ([evaluation], [generation], [policy] dtype), as evaluate_policies takes it."""
    g = cfg.generation
    return {
        "max_new_tokens": cfg.evaluation.max_new_tokens,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "batch_size": g.batch_size,
        "dtype": cfg.policy.dtype if cfg.policy.dtype != "auto" else "float32",
        "backend": g.backend,
    }


def sample_both(
    prompts: list[str], policy_dir, reference_dir, *, seed: int, **knobs
) -> tuple[list[str], list[str]]:
    """One response per prompt from the policy and from the reference (a human evaluation's pair), with the
    seeds multi-sample evaluation uses for sample 0 of each side."""
    knobs = {"device": "cpu", **knobs}
    sides = []
    for side, model_dir in (("policy", policy_dir), ("reference", reference_dir)):
        from loop.ml.generation import make_generator

        generator = make_generator(knobs["backend"], model=str(model_dir), **_without(knobs, "backend"))
        try:
            drawn = generator.generate(prompts, k=1, seed=sample_seeds(seed, side, 1)[0])
        finally:
            generator.close()
        sides.append([storable_text(per_prompt[0].text) for per_prompt in drawn])
    return sides[0], sides[1]


def _judge_all(judge: Judge, prompts: list[str], responses: list[str]) -> list[float]:
    if hasattr(judge, "score"):
        scores = [float(x) for x in judge.score(prompts, responses)]
    elif callable(judge):
        scores = [float(judge(p, r)) for p, r in zip(prompts, responses, strict=True)]
    else:
        raise TypeError(
            f"evaluate_policies: judge must be callable or have score(), got {type(judge).__name__}"
        )
    if len(scores) != len(prompts):
        raise ValueError(
            f"evaluate_policies: judge returned {len(scores)} scores for {len(prompts)} responses"
        )
    for i, score in enumerate(scores):
        if not math.isfinite(score):
            why = getattr(judge, "last_exclusions", {}).get(i)  # RewardScorer says why it gave no score
            raise ValueError(
                f"evaluate_policies: judge returned {score} for response #{i} ({prompts[i][:60]!r})"
                + (f": {why}" if why else "")
            )
    return scores
