"""[evaluation] judge = "human": the win rate of a checkpoint against the initial policy, judged by the
annotators in Argilla, pairwise, on [evaluation] human_prompts eval prompts.

Restart-safe in three steps, each redone harmlessly: (1) sample one response per prompt from each policy and
store the comparisons (content-hash ids, the policy's side drawn once with [evaluation] seed and recorded);
(2) upsert them as records of the dataset "<[argilla] dataset>-eval" (same ids: never duplicated); (3) pull
the answers. Once every comparison has the answers its overlap needs (the round's min_submitted, discards
count), the Evaluation row (judge "human") is stored; until then the caller gets a line saying what it
waits for.
"""

from __future__ import annotations

import logging
import zlib

from loop.config import Config
from loop.evaluation.human import HUMAN, Compared, human_win_rate, settled
from loop.rounds.eval_queue import (
    answered,
    counted,
    deadline,
    eval_dataset_name,
    past_deadline,
    unanswered_records,
)
from loop.rounds.training import TrainingDataError, check_policies
from loop.rounds.waits import Wait, WaitKind
from storage.db import UnitOfWork
from storage.errors import PvarLoopError
from storage.locks import LeaseLost
from storage.models import Checkpoint, Evaluation
from storage.repositories import eval_comparisons as repo
from storage.repositories.checkpoints import ensure_initial_checkpoint
from storage.repositories.evaluations import add_evaluation, find_evaluation
from storage.repositories.exclusions import excluded_names
from storage.repositories.items import record_min_submitted
from storage.repositories.project_secrets import keyed_id, record_secret

log = logging.getLogger(__name__)


def comparison_id(
    secret: str, checkpoint_id: str, reference_id: str, prompt_id: str, policy: str, reference: str
) -> str:
    """The comparison's (and its Argilla record's) id, keyed with the project's secret: hashing a record's
    texts in both orders must not tell an annotator which side is the checkpoint's."""
    return keyed_id(secret, "eval", checkpoint_id, reference_id, prompt_id, policy, reference)


def waiting_line(shown: list[Compared]) -> Wait | None:
    """None once every comparison is answered by its overlap, else what the evaluation waits for."""
    done = sum(settled(c) for c in shown)
    if shown and done == len(shown):
        return None
    return Wait(WaitKind.HUMAN_EVALUATION, f"human evaluation: {done} of {len(shown)} comparisons answered")


def evaluation_waits(session, cfg: Config, checkpoint_id: str) -> Wait | None:
    """What the checkpoint's human evaluation waits for, from the database now (`round status`)."""
    reference = ensure_initial_checkpoint(session, cfg.policy.model)
    if find_evaluation(session, checkpoint_id, reference, HUMAN) is not None:
        return None
    rows = repo.comparisons(session, checkpoint_id, reference)
    shown = counted(rows, excluded_names(session))
    waiting = waiting_line(shown)
    if waiting is not None and past_deadline(cfg, rows) and not answered(shown):
        return Wait(WaitKind.BLOCKED, "human evaluation deadline passed with no comparison answered")
    return waiting


def _sides(cfg: Config, checkpoint_id: str, n: int) -> list[str]:
    """Which side ('a' or 'b') shows the checkpoint's response, per prompt: a seeded random permutation of
    half a, half b, so a position bias of the annotators cancels out instead of adding noise."""
    import numpy as np

    rng = np.random.default_rng([cfg.evaluation.seed, zlib.crc32(checkpoint_id.encode())])
    balanced = ["a", "b"] * (n // 2) + (["a"] if n % 2 else [])
    return [str(side) for side in rng.permutation(balanced)]


def _prepare(cfg: Config, uow: UnitOfWork, checkpoint_id: str, reference: str) -> None:
    """Sample and store the comparisons, unless an earlier run did (they are stored all at once)."""
    from loop.evaluation.win_rate import sample_both, sampling_knobs

    with uow() as session:
        if repo.comparisons(session, checkpoint_id, reference):
            return
        ckpt = session.get(Checkpoint, checkpoint_id)
        paths = {reference: session.get(Checkpoint, reference).path, checkpoint_id: ckpt.path}
        check_policies(paths, reference)
        prompts = repo.eval_prompts(session, cfg.evaluation.human_prompts)
        need = (
            record_min_submitted(session, ckpt.round_id, cfg.argilla.min_submitted)
            if ckpt.round_id is not None
            else cfg.argilla.min_submitted
        )
        secret = record_secret(session)
    if not prompts:
        raise TrainingDataError("no eval prompts: ingest some with `pvar-loop ingest FILE --split eval`")
    texts = [text for _, text in prompts]
    policy, reference_texts = sample_both(
        texts, paths[checkpoint_id], paths[reference], seed=cfg.evaluation.seed, **sampling_knobs(cfg)
    )
    sides = _sides(cfg, checkpoint_id, len(prompts))
    rows = [
        {
            "id": comparison_id(secret, checkpoint_id, reference, pid, p, r),
            "checkpoint_id": checkpoint_id,
            "reference_id": reference,
            "prompt_id": pid,
            "policy_text": p,
            "reference_text": r,
            "policy_side": side,
            "min_submitted": need,
            "answers": {},
        }
        for (pid, _), p, r, side in zip(prompts, policy, reference_texts, sides, strict=True)
    ]
    with uow() as session:
        repo.add_comparisons(session, rows)
    log.info("human evaluation of %s: %d comparisons stored", checkpoint_id, len(rows))


def _connect(cfg: Config, uow: UnitOfWork, checkpoint_id: str, reference: str):
    from annotation.dataset import ensure_dataset
    from loop.argilla_client import connect_client

    with uow() as session:
        rows = repo.comparisons(session, checkpoint_id, reference)
        need = max((c.min_submitted for c in rows), default=cfg.argilla.min_submitted)
    return ensure_dataset(connect_client(cfg), eval_dataset_name(cfg), cfg.argilla.workspace, need)


def evaluate_by_humans(cfg: Config, uow: UnitOfWork, checkpoint_id: str) -> Evaluation | Wait:
    """The stored human Evaluation of the checkpoint, or (not answered enough yet) a line saying what it
    waits for. Each call pushes (idempotent) and pulls once."""
    from annotation.eval_gateway import pull_comparisons, push_comparisons

    with uow() as session:
        reference = ensure_initial_checkpoint(session, cfg.policy.model)
        if session.get(Checkpoint, checkpoint_id) is None:
            raise TrainingDataError(f"no checkpoint {checkpoint_id!r}; see `pvar-loop status`")
        existing = find_evaluation(session, checkpoint_id, reference, HUMAN)
        if existing is not None:
            return existing
    _prepare(cfg, uow, checkpoint_id, reference)
    dataset = _connect(cfg, uow, checkpoint_id, reference)
    push_comparisons(uow, dataset, checkpoint_id, reference)
    pull_comparisons(uow, dataset, checkpoint_id, reference)
    with uow() as session:
        rows = repo.comparisons(session, checkpoint_id, reference)
        excluded = excluded_names(session)
        shown = counted(rows, excluded)  # an excluded annotator's answers are kept, not counted
        waiting = waiting_line(shown)
        late = waiting is not None and past_deadline(cfg, rows)
        if waiting is not None and not (late and answered(shown)):
            where = f"(Argilla dataset {dataset.name!r}: {dataset.annotation_url})"
            if late:
                return Wait(
                    WaitKind.BLOCKED,
                    f"human evaluation deadline passed with no comparison answered {where}; waiting for "
                    "annotators",
                )
            due = deadline(cfg, rows)
            until = f", deadline {due:%Y-%m-%d %H:%M} UTC" if due else ""
            return Wait(waiting.kind, f"{waiting.reason}{until} {where}")
        rate, details = human_win_rate(
            shown, n_bootstrap=cfg.evaluation.n_bootstrap, seed=cfg.evaluation.seed
        )
        details["excluded_annotators"] = sorted(excluded & {a for c in rows for a in (c.answers or {})})
        leftover = unanswered_records(rows, shown) if late else {}
        details["deadline_passed"], details["unanswered"] = late, len(leftover)
        row = add_evaluation(
            session,
            checkpoint_id=checkpoint_id,
            reference_id=reference,
            judge=HUMAN,
            n_prompts=rate.n,
            win_rate=rate.value,
            ci_low=rate.ci_low,
            ci_high=rate.ci_high,
            details=details,
        )
    if leftover:  # past the deadline: what nobody answered leaves the queue, as collection's items do
        from annotation.eval_gateway import withdraw_comparisons

        what = f"withdraw the unanswered human evaluation records of {checkpoint_id} (deadline passed)"
        try:
            withdraw_comparisons(uow, dataset, leftover, what=what)
        except LeaseLost:
            raise
        except (
            PvarLoopError
        ) as e:  # the evaluation is stored: the next pull retries (comparisons_to_withdraw)
            log.warning("%s: the records stay in Argilla's queue until the next pull: %s", checkpoint_id, e)
    log.info(
        "evaluated %s vs %s by humans: win rate %.3f [%.3f, %.3f] on %d prompts",
        checkpoint_id,
        reference,
        rate.value,
        rate.ci_low,
        rate.ci_high,
        rate.n,
    )
    return row
