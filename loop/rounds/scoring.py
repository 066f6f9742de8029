"""Score the unscored train pool (or the given prompts: a round's candidates, loop.rounds.candidates): K samples
per prompt from the policy, a reward per sample, PVar per prompt.

Per batch: read (short transaction) -> generate and score OUTSIDE any transaction -> one transaction that
upserts the batch's generations, reward scores and prompt scores. A batch is therefore all-or-nothing: killed
at any moment (even SIGKILL), a rerun finds exactly the prompts that were not committed and meets them in the
same batches (prompts are read in id order), so it neither loses, duplicates nor redoes work.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from loop.acquisition.pvar import preference_variance, reward_gap
from loop.ml.generation import ResponseGenerator, Sample
from storage.errors import PvarLoopError
from storage.models import Round
from storage.repositories.candidates import add_scoring_cost
from storage.repositories.checkpoints import ensure_initial_checkpoint, get_checkpoint
from storage.repositories.prompts import PromptRow, count_unscored, unscored_among, unscored_prompts
from storage.repositories.scores import (
    EXCLUDED,
    PVAR,
    REWARD_GAP,
    StoredGeneration,
    add_generations,
    generations_for,
    upsert_prompt_scores,
    upsert_reward_scores,
)

if TYPE_CHECKING:
    from loop.config import Config
    from storage.db import UnitOfWork

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
    generate_s: float = 0.0
    reward_s: float = 0.0
    write_s: float = 0.0
    elapsed_s: float = 0.0
    remaining: int = 0
    candidates: int | None = None  # prompts asked for (a round's candidate set); None: the whole pool

    @property
    def prompts_done(self) -> int:
        return self.scored + len(self.excluded)

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
        if self.excluded:
            text += f"; excluded {len(self.excluded)} prompts with fewer than 2 valid responses"
        if self.skipped:
            text += f"; left {len(self.skipped)} prompts for the next run (written concurrently)"
        if self.candidates is not None:
            return text + f"; {self.remaining} of {self.candidates} candidates still unscored"
        return text + f"; {self.remaining} train prompts still unscored"


@dataclass
class _Scored:
    """One prompt's K responses after generation and reward scoring (outside any transaction)."""

    prompt_id: str
    responses: dict[int, Sample]  # sample_index -> response (stored or new)
    new: set[int]  # indices generated in this run
    rewards: dict[int, float]  # sample_index -> raw logit, valid responses only
    reason: str | None = None  # why it cannot get a PVar


def score_pool(
    uow: UnitOfWork,
    generator: ResponseGenerator,
    scorer: ResponseScorer,
    *,
    checkpoint_id: str,
    k: int,
    seed: int,
    batch_size: int,
    limit: int | None = None,
    progress: bool = True,
    round_id: int | None = None,
    prompt_ids: Sequence[str] | None = None,
) -> ScoreReport:
    """Score up to `limit` unscored train prompts for (checkpoint, scorer.model_id), batch_size per commit:
    those among `prompt_ids` when given, else the whole pool. With round_id, each committed batch's work is
    added to the round's scoring cost in the batch's own transaction."""
    if k < 2:
        raise ScoringError(f"k must be >= 2 to compare responses, got {k}")
    if batch_size < 1:
        raise ScoringError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ScoringError(f"limit must be >= 1, got {limit}")
    rm = scorer.model_id
    report = ScoreReport(checkpoint_id=checkpoint_id, reward_model=rm, k=k)
    pending: list[str] | None = None  # the unscored prompts asked for, by id; None: the whole pool
    with uow() as session:
        if get_checkpoint(session, checkpoint_id) is None:
            raise ScoringError(f"checkpoint {checkpoint_id!r} is not in the database")
        if prompt_ids is None:
            todo = count_unscored(session, checkpoint_id, rm)
        else:
            report.candidates = len(set(prompt_ids))
            pending = [p.id for p in unscored_among(session, checkpoint_id, rm, prompt_ids)]
            todo = len(pending)
    todo = todo if limit is None else min(todo, limit)

    from loop.progress import progress as progress_bar

    start, cursor = time.perf_counter(), None
    with progress_bar(todo, "scoring", "prompt", enabled=progress) as bar:
        while todo > 0:
            t_batch = time.perf_counter()  # this batch's cost: the report's counters now and after its write
            done, samples, tokens = report.prompts_done, report.responses_generated, report.tokens_generated
            with uow() as session:
                batch = _next_batch(session, checkpoint_id, rm, cursor, min(batch_size, todo), pending)
                stored = generations_for(session, checkpoint_id, [p.id for p in batch])
            if not batch:
                break
            cursor = batch[-1].id  # keyset cursor: a prompt left for later is not met twice in one run
            number = report.batches + 1
            scored = _generate_and_score(batch, stored, generator, scorer, k, seed, report)
            _fault("after-generate", number)
            t0 = time.perf_counter()
            with uow() as session:
                _write_batch(session, checkpoint_id, rm, k, scored, report, round_id)
                if round_id is not None:
                    add_scoring_cost(
                        session,
                        round_id,
                        prompts=report.prompts_done - done,
                        samples=report.responses_generated - samples,
                        tokens=report.tokens_generated - tokens,
                        seconds=time.perf_counter() - t_batch,
                    )
                session.flush()
                _fault("before-commit", number)
            report.write_s += time.perf_counter() - t0
            _fault("after-commit", number)
            report.batches = number
            todo -= len(batch)
            bar.update(len(batch))
            elapsed = time.perf_counter() - start
            bar.set_postfix(
                prompts_s=f"{report.prompts_done / elapsed:.2f}",
                tok_s=f"{report.tokens_generated / elapsed:.0f}",
            )
    report.elapsed_s = time.perf_counter() - start
    with uow() as session:
        if prompt_ids is None:
            report.remaining = count_unscored(session, checkpoint_id, rm)
        else:
            report.remaining = len(unscored_among(session, checkpoint_id, rm, prompt_ids))
    for prompt_id, reason in report.excluded:
        log.warning("prompt %s excluded: %s", prompt_id, reason)
    # DEBUG: `pvar-loop score` prints the summary and a round's scoring step logs it once with its round.
    log.debug(
        "%s (generation %.1f s, reward %.1f s, database %.1f s)",
        report.summary(),
        report.generate_s,
        report.reward_s,
        report.write_s,
    )
    return report


def _next_batch(
    session, checkpoint_id: str, rm: str, cursor: str | None, n: int, pending: list[str] | None
) -> list[PromptRow]:
    """Up to n unscored prompts after `cursor` in id order: of the pool, or of `pending` (sorted ids), skipping
    any another process scored meanwhile."""
    if pending is None:
        return unscored_prompts(session, checkpoint_id, rm, after=cursor, limit=n)
    start = 0 if cursor is None else bisect.bisect_right(pending, cursor)
    while start < len(pending):
        batch = unscored_among(session, checkpoint_id, rm, pending[start : start + n])
        if batch:
            return batch
        start += n
    return []


def _generate_and_score(
    batch: Sequence[PromptRow],
    stored: dict[str, dict[int, StoredGeneration]],
    generator: ResponseGenerator,
    scorer: ResponseScorer,
    k: int,
    seed: int,
    report: ScoreReport,
) -> list[_Scored]:
    """Sample what is missing, then reward every valid response of the batch in one scorer call."""
    items = []
    for p in batch:
        have = stored.get(p.id, {})
        responses = {i: Sample(g.text, g.n_tokens) for i, g in have.items() if i < k}
        items.append(_Scored(p.id, responses, set(), {}))
    need = [(p, item) for p, item in zip(batch, items, strict=True) if len(item.responses) < k]
    report.reused_prompts += len(batch) - len(need)
    if need:
        t0 = time.perf_counter()
        samples = generator.generate([p.text for p, _ in need], k, seed)
        report.generate_s += time.perf_counter() - t0
        if len(samples) != len(need):
            raise ScoringError(f"generator returned samples for {len(samples)} prompts, expected {len(need)}")
        for (_, item), got in zip(need, samples, strict=True):
            for i, sample in enumerate(got[:k]):
                if i not in item.responses:  # a stored sample wins: it is what the database holds
                    # PostgreSQL text cannot hold NUL; replace it before scoring so score and row agree.
                    sample = Sample(sample.text.replace("\x00", "\ufffd"), sample.n_tokens)
                    item.responses[i] = sample
                    item.new.add(i)
                    report.responses_generated += 1
                    report.tokens_generated += sample.n_tokens

    texts = {p.id: p.text for p in batch}
    # Blank responses carry nothing to compare; they are stored but get no reward.
    todo = [(item, i) for item in items for i, s in sorted(item.responses.items()) if s.text.strip()]
    if todo:
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
        for (item, i), r in zip(todo, rewards.tolist(), strict=True):
            if math.isfinite(r):
                item.rewards[i] = r
    for item in items:
        if len(item.rewards) < 2:
            blank = sum(1 for s in item.responses.values() if not s.text.strip())
            bad = sum(1 for s in item.responses.values() if s.text.strip()) - len(item.rewards)
            item.reason = (
                f"{len(item.rewards)} valid responses of {k} needed >= 2 "
                f"({k - len(item.responses)} missing, {blank} blank, {bad} with a non-finite reward)"
            )
    return items


def _write_batch(
    session,
    checkpoint_id: str,
    rm: str,
    k: int,
    items: list[_Scored],
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
    score_rows: list[tuple[str, str, int, float]] = []
    for it in items:
        have = stored.get(it.prompt_id, {})
        if any(i not in have or have[i].text != s.text for i, s in it.responses.items()):
            # Another run stored different samples first: score those next time instead of mixing them.
            report.skipped.append((it.prompt_id, "its samples were written by another run meanwhile"))
            continue
        if it.reason is not None:
            report.excluded.append((it.prompt_id, it.reason))
            score_rows.append((it.prompt_id, EXCLUDED, k, float(len(it.rewards))))
            reward_rows += [(have[i].id, r) for i, r in it.rewards.items()]
            continue
        order = sorted(it.rewards)
        values = np.array([[it.rewards[i] for i in order]])
        n = len(order)
        score_rows.append((it.prompt_id, PVAR, n, float(preference_variance(values)[0])))
        score_rows.append((it.prompt_id, REWARD_GAP, n, float(reward_gap(values)[0])))
        reward_rows += [(have[i].id, it.rewards[i]) for i in order]
        report.scored += 1
    upsert_reward_scores(session, rm, reward_rows)
    upsert_prompt_scores(session, checkpoint_id, rm, score_rows, round_id=round_id)


def _fault(point: str, batch: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want_point, _, want_batch = spec.partition(":")
    if want_point not in FAULT_POINTS or not want_batch.isdigit():
        raise ScoringError(f"{FAULT_ENV}={spec!r}: expected <{'|'.join(FAULT_POINTS)}>:<batch number>")
    if want_point == point and int(want_batch) == batch:
        log.warning("fault injection: SIGKILL at %s of batch %d", point, batch)
        os.kill(os.getpid(), signal.SIGKILL)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def reward_model_id(cfg: Config) -> str:
    """The id scores of the configured reward model are stored under (RewardScorer keeps the ref as given)."""
    return cfg.reward.model


def selection_reward_model(session, cfg: Config, arm: str = "main") -> str:
    """The reward model production rounds score and select with: `[reward] model`, or, with `[reward] refresh`
    on, the newest kept refresh candidate that started from it (loop.rounds.reward_refresh; a different
    `[reward] model` starts over from itself). Experiment arms always use `[reward] model`."""
    from storage.repositories.reward_refreshes import kept_reward_model

    if cfg.reward.refresh == "off" or arm != "main":
        return reward_model_id(cfg)
    return kept_reward_model(session, cfg.reward.model) or reward_model_id(cfg)


def score_with_config(
    cfg: Config,
    uow: UnitOfWork,
    limit: int | None = None,
    *,
    checkpoint_id: str | None = None,
    progress: bool = True,
    round_id: int | None = None,
    prompt_ids: Sequence[str] | None = None,
) -> ScoreReport:
    """Build generator and reward scorer from the config and score the pool (or only `prompt_ids`): the one
    path the CLI and the round runner share. Without checkpoint_id the initial policy (policy.model) is
    scored."""
    from loop.ml.loading import check_causal_lm, check_reward_model
    from loop.ml.rewards import RewardScorer

    with uow() as session:
        rnd = session.get(Round, round_id) if round_id is not None else None
        reward_model = selection_reward_model(session, cfg, rnd.arm if rnd else "main")
        if checkpoint_id is None:
            model = cfg.policy.model
            check_causal_lm(model, "[policy] model")
            checkpoint_id = ensure_initial_checkpoint(session, model)
        else:
            checkpoint = get_checkpoint(session, checkpoint_id)
            if checkpoint is None:
                raise ScoringError(f"checkpoint {checkpoint_id!r} is not in the database")
            model = checkpoint.path
            check_causal_lm(model, f"checkpoint {checkpoint_id!r}")
        check_reward_model(reward_model, "[reward] model")
    scorer = RewardScorer(
        reward_model,
        dtype=cfg.reward.dtype,
        max_length=cfg.reward.max_length,
        batch_size=cfg.reward.batch_size,
        device=_device(),
    )
    try:
        return score_with_scorer(
            cfg,
            uow,
            scorer,
            model=model,
            checkpoint_id=checkpoint_id,
            limit=limit,
            progress=progress,
            round_id=round_id,
            prompt_ids=prompt_ids,
        )
    finally:
        scorer.close()


def score_with_scorer(
    cfg: Config,
    uow: UnitOfWork,
    scorer: ResponseScorer,
    *,
    model: str,
    checkpoint_id: str,
    limit: int | None = None,
    progress: bool = True,
    round_id: int | None = None,
    prompt_ids: Sequence[str] | None = None,
) -> ScoreReport:
    """Score the pool (or only `prompt_ids`) under checkpoint_id (its weights at `model`) with any scorer, sampling with the
    [generation] settings; the generator is built, used and closed here (stored samples are reused)."""
    from loop.ml.generation import make_generator

    g = cfg.generation
    generator = make_generator(
        g.backend,
        model=model,
        dtype=cfg.policy.dtype,
        temperature=g.temperature,
        top_p=g.top_p,
        max_new_tokens=g.max_new_tokens,
        batch_size=g.batch_size,
        device=_device(),
    )
    try:
        return score_pool(
            uow,
            generator,
            scorer,
            checkpoint_id=checkpoint_id,
            k=g.k,
            seed=g.seed,
            batch_size=g.batch_size,
            limit=limit,
            progress=progress,
            round_id=round_id,
            prompt_ids=prompt_ids,
        )
    finally:
        generator.close()
