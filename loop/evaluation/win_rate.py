"""Judge-agnostic evaluation: head-to-head win rate of a policy against the reference, with a bootstrap CI.

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
from pathlib import Path
from typing import Protocol

import numpy as np

from loop.config import EvaluationConfig, GenerationConfig, PolicyConfig


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
    policy_scores: Sequence[float],
    reference_scores: Sequence[float],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    tie_tolerance: float = 0.0,
) -> WinRate:
    """Win rate of the policy over the reference from paired per-prompt judge scores.

    Prompts are the resampling unit of the bootstrap. Scores within tie_tolerance of each other are a tie.
    """
    policy = np.asarray(policy_scores, dtype=float)
    reference = np.asarray(reference_scores, dtype=float)
    if policy.ndim != 1 or policy.shape != reference.shape:
        raise ValueError(
            f"win_rate: policy_scores and reference_scores must be 1-D and the same length, "
            f"got shapes {policy.shape} and {reference.shape}"
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
    rng = np.random.default_rng(seed)
    n = outcomes.size
    means = outcomes[rng.integers(0, n, size=(n_bootstrap, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    value = float(outcomes.mean())
    # Quantiles of a discrete bootstrap can miss the point estimate by float rounding; keep value inside.
    return WinRate(value=value, ci_low=min(float(low), value), ci_high=max(float(high), value), n=int(n))


@dataclass(frozen=True)
class PolicyEvaluation:
    """Responses, judge scores and the resulting win rate of one policy-vs-reference evaluation."""

    win_rate: WinRate
    prompts: list[str]
    policy_responses: list[str]
    reference_responses: list[str]
    policy_scores: list[float]
    reference_scores: list[float]


# Config defaults of the knobs evaluate_policies takes (one source of truth: loop.config).
_EVALUATION, _GENERATION, _POLICY = EvaluationConfig(), GenerationConfig(), PolicyConfig()


def sampling_seeds(seed: int) -> tuple[int, int]:
    """Two independent generator seeds (policy, reference) derived from one evaluation seed."""
    policy_state, reference_state = (s.generate_state(1)[0] for s in np.random.SeedSequence(seed).spawn(2))
    return int(policy_state), int(reference_state)


def evaluate_policies(
    eval_prompts: Sequence[str],
    policy_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    judge: Judge,
    *,
    max_new_tokens: int = _EVALUATION.max_new_tokens,
    temperature: float = _GENERATION.temperature,
    top_p: float = _GENERATION.top_p,
    batch_size: int = _GENERATION.batch_size,
    dtype: str = _POLICY.dtype,
    backend: str = _GENERATION.backend,
    device: str = "cpu",
    seed: int = _EVALUATION.seed,
    n_bootstrap: int = _EVALUATION.n_bootstrap,
    progress: bool = False,
) -> PolicyEvaluation:
    """Sample one response per prompt from each model, judge both, and return the policy's win rate.

    The defaults are the config's ([evaluation], [generation] sampling, [policy] dtype), as
    loop.rounds.evaluating passes them.

    Policy and reference sample with independent seeds (see sampling_seeds), so evaluating the reference
    against itself measures pure sampling noise: its CI should contain 0.5.
    """
    prompts = list(eval_prompts)
    if not prompts:
        raise ValueError("evaluate_policies: no evaluation prompts given")
    policy_seed, reference_seed = sampling_seeds(seed)
    knobs = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "batch_size": batch_size,
        "dtype": dtype,
        "backend": backend,
        "device": device,
    }
    policy_responses = _sample_one_each(
        policy_dir, prompts, seed=policy_seed, progress=progress and "evaluating: policy", **knobs
    )
    reference_responses = _reference_responses(
        reference_dir, prompts, seed=reference_seed, progress=progress and "evaluating: reference", **knobs
    )
    policy_scores = _judge_all(judge, prompts, policy_responses)
    reference_scores = _judge_all(judge, prompts, reference_responses)
    result = win_rate(policy_scores, reference_scores, n_bootstrap=n_bootstrap, seed=seed)
    return PolicyEvaluation(
        win_rate=result,
        prompts=prompts,
        policy_responses=policy_responses,
        reference_responses=reference_responses,
        policy_scores=policy_scores,
        reference_scores=reference_scores,
    )


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
            raise ValueError(
                f"evaluate_policies: judge returned {score} for prompt #{i} ({prompts[i][:60]!r})"
            )
    return scores


_REFERENCE_CACHE: dict[tuple, list[str]] = {}
_REFERENCE_CACHE_SIZE = 4


def _reference_responses(
    model_dir, prompts: list[str], *, progress: str | bool = False, **knobs
) -> list[str]:
    """The reference's samples, memoised in-process: every round's evaluation samples the same reference on the
    same prompts with the same seed, and sampling is deterministic for that, so one draw serves them all (the
    scheduler and `pvar-loop experiment` evaluate many checkpoints in one process). The key includes the
    weights' modification times, so a reference rewritten in place is sampled again."""
    path = Path(model_dir)
    stamps = (
        tuple(sorted((f.name, f.stat().st_mtime_ns) for f in path.glob("*.safetensors")))
        if path.is_dir()
        else ()
    )
    digest = hashlib.sha256("\x00".join(prompts).encode()).hexdigest()
    key = (
        str(path.resolve()) if path.exists() else str(model_dir),
        stamps,
        digest,
        tuple(sorted(knobs.items())),
    )
    if key not in _REFERENCE_CACHE:
        if len(_REFERENCE_CACHE) >= _REFERENCE_CACHE_SIZE:
            _REFERENCE_CACHE.pop(next(iter(_REFERENCE_CACHE)))
        _REFERENCE_CACHE[key] = _sample_one_each(model_dir, prompts, progress=progress, **knobs)
    return list(_REFERENCE_CACHE[key])


def _sample_one_each(
    model_dir, prompts: list[str], *, seed: int, backend: str, progress: str | bool = False, **knobs
) -> list[str]:
    """One sample per prompt. With `progress` (the bar's label), the prompts go to the transformers generator a
    batch at a time, the very batches it would cut itself, so the samples are the same with or without it."""
    from loop.ml.generation import make_generator
    from loop.progress import progress as progress_bar

    generator = make_generator(backend, model=str(model_dir), **knobs)
    # vLLM schedules its own batches (per-prompt seeds): one call, no bar.
    step = knobs["batch_size"] if progress and backend == "transformers" else len(prompts)
    samples = []
    try:
        with progress_bar(len(prompts), str(progress), "prompt", enabled=bool(progress)) as bar:
            for i in range(0, len(prompts), max(step, 1)):
                chunk = prompts[i : i + step]
                samples += generator.generate(chunk, k=1, seed=seed)
                bar.update(len(chunk))
    finally:
        generator.close()  # free one model before the other is loaded
    return [per_prompt[0].text for per_prompt in samples]
