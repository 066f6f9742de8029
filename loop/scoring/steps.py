"""The steps of pool scoring shared by its engines (loop.scoring.pool: local; loop.scoring.ray_engine: Ray):
stored samples -> missing samples generated -> rewards -> PVar per prompt -> one batch written.

Each step works on one committed batch at a time, so both engines draw, score and write the same things.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from loop.acquisition.pvar import preference_variance, reward_gap
from loop.ml.generation import ResponseGenerator, Sample
from storage.errors import PvarLoopError
from storage.repositories.candidates import add_scoring_cost
from storage.repositories.prompts import PromptRow, count_unscored, unscored_among
from storage.repositories.scores import (
    StoredGeneration,
    add_generations,
    generations_for,
    upsert_prompt_scores,
    upsert_reward_exclusions,
    upsert_reward_scores,
)
from storage.statuses import Metric
from storage.types import storable_text

log = logging.getLogger(__name__)

# Test-only fault injection: "<point>:<batch>" SIGKILLs this process at that point of that batch (1-based).
FAULT_ENV = "PVAR_LOOP_SCORING_FAULT"
FAULT_POINTS = ("after-generate", "before-commit", "after-commit")


class ScoringError(PvarLoopError, ValueError):
    """Scoring cannot start or a backend broke its contract; the message says which and why."""


class ResponseScorer(Protocol):
    """A reward model: one raw logit per (prompt, response) pair."""

    model_id: str

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class ScoreRequest:
    """What one scoring run is asked to do, passed unchanged from score_with_config down to the engine."""

    checkpoint_id: str | None = None  # the policy scored; None: the initial policy (score_with_config)
    limit: int | None = None  # at most this many prompts; None: all that are unscored
    progress: bool = True  # a bar on a terminal, a periodic log line otherwise
    round_id: int | None = None  # each committed batch's work is added to this round's scoring cost
    prompt_ids: Sequence[str] | None = None  # only these (a round's candidates); None: the whole train pool


@dataclass
class ScoreReport:
    """What one scoring run did; `excluded` lists (prompt_id, reason) for prompts that got no PVar."""

    checkpoint_id: str
    reward_model: str
    k: int
    scored: int = 0
    excluded: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reused_prompts: int = 0
    batches: int = 0
    responses_generated: int = 0
    tokens_generated: int = 0
    responses_rewarded: int = 0
    responses_unread: int = 0  # too long for the reward model to read whole: no reward (reward_exclusions)
    generate_s: float = 0.0
    reward_s: float = 0.0
    write_s: float = 0.0
    elapsed_s: float = 0.0
    remaining: int = 0
    candidates: int | None = None  # prompts asked for (a round's candidate set); None: the whole pool

    @property
    def prompts_done(self) -> int:
        return self.scored + len(self.excluded)

    def counters(self) -> tuple[int, int, int]:
        """(prompts, samples generated, tokens generated) so far: a batch's cost is the difference."""
        return self.prompts_done, self.responses_generated, self.tokens_generated

    @property
    def prompts_per_s(self) -> float:
        return self.prompts_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_generated / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        text = (
            f"scored {self.scored} prompts (K={self.k}) for checkpoint {self.checkpoint_id} with reward "
            f"model {self.reward_model} in {self.elapsed_s:.1f} s: {self.prompts_per_s:.2f} prompts/s, "
            f"{self.tokens_per_s:.1f} generated tokens/s"
        )
        if self.reused_prompts:
            text += f"; reused stored samples of {self.reused_prompts} prompts"
        if self.responses_unread:
            text += f"; {self.responses_unread} responses got no reward (too long for the reward model)"
        if self.excluded:
            text += f"; excluded {len(self.excluded)} prompts with fewer than 2 valid responses"
        if self.skipped:
            text += f"; left {len(self.skipped)} prompts for the next run (written concurrently)"
        if self.candidates is not None:
            return text + f"; {self.remaining} of {self.candidates} candidates still unscored"
        return text + f"; {self.remaining} train prompts still unscored"


@dataclass
class ScoredPrompt:
    """One prompt's K responses after generation and reward scoring (outside any transaction)."""

    prompt_id: str
    responses: dict[int, Sample]  # sample_index -> response (stored or new)
    new: set[int]  # indices generated in this run
    rewards: dict[int, float]  # sample_index -> raw logit, valid responses only
    reason: str | None = None  # why it cannot get a PVar
    pvar: float = math.nan  # set with gap by finish_items when reason is None
    gap: float = math.nan
    unread: dict[int, str] = field(default_factory=dict)  # sample_index -> why the reward model gave no score


def check_score_args(k: int, batch_size: int, limit: int | None) -> None:
    if k < 2:
        raise ScoringError(f"k must be >= 2 to compare responses, got {k}")
    if batch_size < 1:
        raise ScoringError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ScoringError(f"limit must be >= 1, got {limit}")


def generate_and_score(
    batch: Sequence[PromptRow],
    stored: dict[str, dict[int, StoredGeneration]],
    generator: ResponseGenerator,
    scorer: ResponseScorer,
    k: int,
    seed: int,
    report: ScoreReport,
) -> list[ScoredPrompt]:
    """Sample what is missing, then reward every valid response of the batch in one scorer call."""
    items = stored_items(batch, stored, k, report)
    generate_missing(batch, items, generator, k, seed, report)
    reward_items(batch, items, scorer, report)
    finish_items(items, k)
    return items


# The steps below are also the stages of the Ray engine (loop.scoring.ray_engine), so both engines compute the same things.


def stored_items(
    batch: Sequence[PromptRow], stored: dict[str, dict[int, StoredGeneration]], k: int, report: ScoreReport
) -> list[ScoredPrompt]:
    """One item per prompt holding its stored samples (a stored sample wins: it is what the database holds)."""
    items = []
    for p in batch:
        have = stored.get(p.id, {})
        responses = {i: Sample(g.text, g.n_tokens) for i, g in have.items() if i < k}
        items.append(ScoredPrompt(p.id, responses, set(), {}))
    report.reused_prompts += sum(1 for item in items if len(item.responses) >= k)
    return items


def generate_missing(
    batch: Sequence[PromptRow],
    items: list[ScoredPrompt],
    generator: ResponseGenerator,
    k: int,
    seed: int,
    report: ScoreReport,
) -> None:
    """Sample K responses for every prompt short of K stored ones; keep the new ones at the missing indices."""
    need = [(p, item) for p, item in zip(batch, items, strict=True) if len(item.responses) < k]
    if not need:
        return
    t0 = time.perf_counter()
    samples = generator.generate([p.text for p, _ in need], k, seed)
    report.generate_s += time.perf_counter() - t0
    if len(samples) != len(need):
        raise ScoringError(f"generator returned samples for {len(samples)} prompts, expected {len(need)}")
    for (_, item), got in zip(need, samples, strict=True):
        for i, sample in enumerate(got[:k]):
            if i not in item.responses:
                # cleaned as it will be stored, before scoring, so score and row agree
                sample = Sample(storable_text(sample.text), sample.n_tokens)
                item.responses[i] = sample
                item.new.add(i)
                report.responses_generated += 1
                report.tokens_generated += sample.n_tokens


def reward_items(
    batch: Sequence[PromptRow], items: list[ScoredPrompt], scorer: ResponseScorer, report: ScoreReport
) -> None:
    """Reward every non-blank response of the batch in one scorer call; non-finite rewards are dropped."""
    texts = {p.id: p.text for p in batch}
    # Blank responses carry nothing to compare; they are stored but get no reward.
    todo = [(item, i) for item in items for i, s in sorted(item.responses.items()) if s.text.strip()]
    if not todo:
        return
    t0 = time.perf_counter()
    rewards = np.asarray(
        scorer.score(
            [texts[item.prompt_id] for item, _ in todo], [item.responses[i].text for item, i in todo]
        ),
        dtype=np.float64,
    ).reshape(-1)
    report.reward_s += time.perf_counter() - t0
    report.responses_rewarded += len(todo)
    if rewards.shape != (len(todo),):
        raise ScoringError(f"reward model returned {rewards.size} scores for {len(todo)} responses")
    unread = getattr(scorer, "last_exclusions", {})  # RewardScorer: responses it could not read whole
    for n, ((item, i), r) in enumerate(zip(todo, rewards.tolist(), strict=True)):
        if math.isfinite(r):
            item.rewards[i] = r
        elif n in unread:
            item.unread[i] = unread[n]


def finish_items(items: list[ScoredPrompt], k: int) -> None:
    """PVar and reward gap per prompt with >= 2 rewards; the others get the reason they cannot have one."""
    for item in items:
        if len(item.rewards) < 2:
            blank = sum(1 for s in item.responses.values() if not s.text.strip())
            bad = sum(1 for s in item.responses.values() if s.text.strip()) - len(item.rewards)
            too_long = len(item.unread)
            item.reason = (
                f"{len(item.rewards)} valid responses of {k} needed >= 2 "
                f"({k - len(item.responses)} missing, {blank} blank, {too_long} too long for the reward "
                f"model, {bad - too_long} with a non-finite reward)"
            )
            continue
        values = np.array([[item.rewards[i] for i in sorted(item.rewards)]])
        item.pvar = float(preference_variance(values)[0])
        item.gap = float(reward_gap(values)[0])


def write_batch(
    session,
    checkpoint_id: str,
    rm: str,
    k: int,
    items: list[ScoredPrompt],
    report: ScoreReport,
    round_id: int | None,
) -> None:
    """Upsert the batch's generations, then reward and prompt scores keyed by the stored generation ids."""
    new_rows = [
        {"prompt_id": it.prompt_id, "sample_index": i, "text": s.text, "n_tokens": s.n_tokens}
        for it in items
        for i, s in sorted(it.responses.items())
        if i in it.new
    ]
    add_generations(session, checkpoint_id, new_rows)
    stored = generations_for(session, checkpoint_id, [it.prompt_id for it in items])
    reward_rows: list[tuple[int, float]] = []
    unread_rows: list[tuple[int, str]] = []
    score_rows: list[tuple[str, str, int, float]] = []
    for it in items:
        have = stored.get(it.prompt_id, {})
        if any(i not in have or have[i].text != s.text for i, s in it.responses.items()):
            # Another run stored different samples first: score those next time instead of mixing them.
            report.skipped.append((it.prompt_id, "its samples were written by another run meanwhile"))
            continue
        unread_rows += [(have[i].id, why) for i, why in sorted(it.unread.items())]
        if it.reason is not None:
            report.excluded.append((it.prompt_id, it.reason))
            score_rows.append((it.prompt_id, Metric.EXCLUDED, k, float(len(it.rewards))))
            reward_rows += [(have[i].id, r) for i, r in it.rewards.items()]
            continue
        order = sorted(it.rewards)
        n = len(order)
        score_rows.append((it.prompt_id, Metric.PVAR, n, it.pvar))
        score_rows.append((it.prompt_id, Metric.REWARD_GAP, n, it.gap))
        reward_rows += [(have[i].id, it.rewards[i]) for i in order]
        report.scored += 1
    upsert_reward_scores(session, rm, reward_rows)
    upsert_reward_exclusions(session, rm, unread_rows)
    report.responses_unread += len(unread_rows)
    upsert_prompt_scores(session, checkpoint_id, rm, score_rows, round_id=round_id)


def commit_batch(
    uow,
    number: int,
    checkpoint_id: str,
    rm: str,
    k: int,
    items: list[ScoredPrompt],
    report: ScoreReport,
    round_id: int | None,
    *,
    before: tuple[int, int, int],
    seconds: float,
) -> None:
    """Write batch `number` in one transaction, with the crash tests' fault points around it. A round's batch
    also adds its cost: the report's (prompts, samples, tokens) since `before`, and `seconds`."""
    fault_point("after-generate", number)
    t0 = time.perf_counter()
    with uow() as session:
        write_batch(session, checkpoint_id, rm, k, items, report, round_id)
        if round_id is not None:  # counted once per committed batch
            now = report.counters()
            prompts, samples, tokens = (a - b for a, b in zip(now, before, strict=True))
            add_scoring_cost(
                session, round_id, prompts=prompts, samples=samples, tokens=tokens, seconds=seconds
            )
        session.flush()
        fault_point("before-commit", number)
    report.write_s += time.perf_counter() - t0
    fault_point("after-commit", number)
    report.batches = number


def fault_point(point: str, batch: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want_point, _, want_batch = spec.partition(":")
    if want_point not in FAULT_POINTS or not want_batch.isdigit():
        raise ScoringError(f"{FAULT_ENV}={spec!r}: expected <{'|'.join(FAULT_POINTS)}>:<batch number>")
    if want_point == point and int(want_batch) == batch:
        log.warning("fault injection: SIGKILL at %s of batch %d", point, batch)
        os.kill(os.getpid(), signal.SIGKILL)


def finish_report(
    uow, report: ScoreReport, start: float, prompt_ids: Sequence[str] | None, engine: str
) -> ScoreReport:
    """Every engine's tail: elapsed time, what is left (of `prompt_ids`, a round's candidates, or of the
    pool), one warning per excluded prompt, the timing split at DEBUG."""
    report.elapsed_s = time.perf_counter() - start
    if prompt_ids is not None:
        report.candidates = len(set(prompt_ids))
    with uow() as session:
        report.remaining = remaining_unscored(session, report.checkpoint_id, report.reward_model, prompt_ids)
    for prompt_id, reason in report.excluded:
        log.warning("prompt %s excluded: %s", prompt_id, reason)
    # DEBUG: `pvar-loop score` prints the summary and a round's scoring step logs it once with its round.
    log.debug(
        "%s (%s; generation %.1f s, reward %.1f s, database %.1f s)",
        report.summary(),
        engine,
        report.generate_s,
        report.reward_s,
        report.write_s,
    )
    return report


def remaining_unscored(session, checkpoint_id: str, rm: str, prompt_ids: Sequence[str] | None) -> int:
    if prompt_ids is None:
        return count_unscored(session, checkpoint_id, rm)
    return len(unscored_among(session, checkpoint_id, rm, prompt_ids))
