"""The real work behind each round step (see loop/rounds/state.py Services): thin adapters from (config, unit of
work, round) to the scoring, annotation and training modules; the state machine stays free of heavy
imports."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from loop.config import Config
from loop.rounds.waits import Wait
from storage.db import UnitOfWork

log = logging.getLogger(__name__)


def record_overlap(cfg: Config, uow: UnitOfWork, round_id: int) -> int:
    """Record the round's annotator overlap unless recorded already, and return it: `[argilla] min_submitted`
    as it was at the round's first step, so a change of the setting applies from the next round on."""
    from storage.repositories.items import record_min_submitted

    with uow() as session:
        return record_min_submitted(session, round_id, cfg.argilla.min_submitted)


def score(cfg: Config, uow: UnitOfWork, checkpoint_id: str, round_id: int) -> None:
    """Score the round's candidates (drawn once, loop.rounds.candidates; or the whole free pool) under the
    round's policy; prompts already scored under that policy and reward model are not scored again."""
    from loop.rounds.candidates import candidate_prompt_ids
    from loop.scoring.pool import score_with_config

    record_overlap(cfg, uow, round_id)  # the round's first step records the overlap it collects with
    candidates = candidate_prompt_ids(cfg, uow, round_id)
    report = score_with_config(
        cfg, uow, checkpoint_id=checkpoint_id, round_id=round_id, prompt_ids=candidates
    )
    log.info("round id %s: %s", round_id, report.summary())


def push_order(cfg: Config, uow: UnitOfWork, round_id: int) -> list[str]:
    """The round's item ids in the order annotators should label them (loop.rounds.priority)."""
    from loop.rounds.priority import priority_order
    from loop.scoring.pool import reward_model_id
    from storage.models import Round
    from storage.repositories.items import round_item_scores

    with uow() as session:
        rnd = session.get(Round, round_id)
        scores = round_item_scores(session, round_id, reward_model_id(cfg))
        return priority_order(rnd.strategy, scores, rnd.seed)


def push(cfg: Config, uow: UnitOfWork, round_id: int) -> None:
    from annotation.gateway import push_items
    from annotation.links import link_lines
    from loop.argilla_client import connect_dataset

    dataset = connect_dataset(cfg, record_overlap(cfg, uow, round_id))  # the dataset follows the round
    push_items(
        uow,
        dataset,
        round_id,
        order=push_order(cfg, uow, round_id),
        gold_per_round=cfg.argilla.gold_per_round,
    )  # logs its own summary
    number, links = record_links(uow, dataset, round_id)
    for line in link_lines(number, links):  # where annotators start: the push's line in `run`'s log
        log.info("round %s: %s", number, line, extra={"event": "push", "round": number})


def record_links(uow: UnitOfWork, dataset, round_id: int) -> tuple[int, dict[str, str]]:
    """Record the round's priority link(s) (annotation.dataset.queue_links) for `status`, `round status` and
    the other commands that show them; returns (round number, links)."""
    from annotation.links import queue_links
    from storage.models import Round
    from storage.repositories.rounds import record_queue_links

    with uow() as session:
        number = session.get(Round, round_id).number
        links = queue_links(dataset, number)
        record_queue_links(session, round_id, links)
    return number, links


def pull(cfg: Config, uow: UnitOfWork, round_id: int) -> None:
    from annotation.api import AnnotationSyncError
    from annotation.blind import blind
    from annotation.exclusions import release_shared
    from annotation.gateway import pull_labels, push_items, withdraw_cancelled
    from loop.argilla_client import connect_dataset
    from loop.rounds.eval_queue import withdraw_cancelled_evaluations

    dataset = connect_dataset(cfg, record_overlap(cfg, uow, round_id))
    withdraw_cancelled(uow, dataset)  # what a cancel could not take out of the queue (Argilla was down)
    withdraw_cancelled_evaluations(cfg, uow)
    if blind(dataset):  # an annotator added (or removed) since the push: place what coverage lacks
        try:
            placed = push_items(
                uow,
                dataset,
                round_id,
                order=push_order(cfg, uow, round_id),
                gold_per_round=cfg.argilla.gold_per_round,
            )
        except AnnotationSyncError as e:  # no annotator left, Argilla refusing a workspace...: still pull
            log.warning("round id %s: could not place records with the annotators: %s", round_id, e)
        else:
            if placed.pushed:  # a newcomer's queue: their link joins the round's
                record_links(uow, dataset, round_id)
    report = pull_labels(
        uow,
        dataset,
        round_id=round_id,
        aggregation=cfg.argilla.aggregation,
        min_confidence=cfg.argilla.min_confidence,
    )  # logs counts
    log.debug("round id %s: pulled %s", round_id, report)
    if not blind(
        dataset
    ):  # an excluded annotator's new answer must not take a record out of the others' queue
        release_shared(uow, dataset, round_id, report.response_ids)
    if _records_gone(uow, round_id, report):
        # Deleted in Argilla (a record, or the whole dataset, which connect_dataset made anew): collection
        # cannot go on without them, so they go back into the queue as a push would put them.
        push_items(
            uow,
            dataset,
            round_id,
            order=push_order(cfg, uow, round_id),
            gold_per_round=cfg.argilla.gold_per_round,
        )


def _records_gone(uow: UnitOfWork, round_id: int, report) -> bool:
    """The pull found items of this round whose record Argilla no longer has (skipped, with no annotator)."""
    from storage.repositories.items import pushed_items

    unknown = {s.record for s in report.skipped if s.annotator is None}
    if not unknown:
        return False
    with uow() as session:
        return any(i.id in unknown for i in pushed_items(session, round_id))


@dataclass(frozen=True)
class PulledAnswers:
    """What `pvar-loop pull` did: the pull's counts, the cancelled rounds' records withdrawn first, and
    Argilla's own count of the round asked for (None: every round was pulled)."""

    report: Any  # annotation.gateway.PullReport
    withdrawn: Any  # annotation.gateway.WithdrawReport
    progress: Any  # annotation.progress.RoundProgress | None


def pull_answers(cfg: Config, uow: UnitOfWork, round_id: int | None, round_number: int | None):
    """`pvar-loop pull`: withdraw what a cancel could not take out of the queue (Argilla was down), then store
    the answers as labels and aggregate them (of one round, or of every round). None when the dataset does
    not exist yet (nothing was pushed)."""
    from annotation.dataset import open_dataset
    from annotation.gateway import pull_labels, withdraw_cancelled
    from annotation.progress import round_progress
    from loop.argilla_client import connect_client

    dataset = open_dataset(connect_client(cfg), cfg.argilla.dataset, cfg.argilla.workspace)
    if dataset is None:
        return None
    withdrawn = withdraw_cancelled(uow, dataset)
    report = pull_labels(
        uow, dataset, round_id, aggregation=cfg.argilla.aggregation, min_confidence=cfg.argilla.min_confidence
    )
    # Argilla's own progress bar mixes every round of the dataset: count the one asked for.
    progress = round_progress(dataset, round_number) if round_number else None
    return PulledAnswers(report, withdrawn, progress)


def withdraw(cfg: Config, uow: UnitOfWork):
    """Take the waiting records of cancelled rounds out of Argilla (annotation.gateway.withdraw_cancelled), and
    their human evaluations' records (loop.rounds.eval_queue); None when there is nothing to withdraw
    (Argilla is not contacted) or no dataset yet."""
    from loop.rounds.eval_queue import withdraw_cancelled_evaluations
    from storage.repositories.items import records_to_withdraw

    evaluations = withdraw_cancelled_evaluations(cfg, uow)
    with uow() as session:
        if not records_to_withdraw(session):
            return _evaluations_only(evaluations)
    from annotation.dataset import open_dataset
    from annotation.gateway import withdraw_cancelled
    from loop.argilla_client import connect_client

    dataset = open_dataset(connect_client(cfg), cfg.argilla.dataset, cfg.argilla.workspace)
    report = None if dataset is None else withdraw_cancelled(uow, dataset)
    if report is None:
        return _evaluations_only(evaluations)
    report.evaluation_records = evaluations
    return report


def _evaluations_only(evaluations: int):
    from annotation.gateway import WithdrawReport

    return WithdrawReport(evaluation_records=evaluations) if evaluations else None


def train(cfg: Config, uow: UnitOfWork, round_id: int) -> str | None:
    """The new checkpoint id, or None when the labels hold no a/b decision (the policy stays as it was)."""
    from loop.rounds.training import NoTrainingSignal, train_round

    try:
        return train_round(cfg, uow, round_id)
    except NoTrainingSignal as e:
        log.warning("%s", e)
        return None


def refresh_reward(cfg: Config, uow: UnitOfWork, round_id: int) -> None:
    """Retrain the selection reward model on the labels so far and keep it if it agrees with the humans at
    least as well as the current one ([reward] refresh; a no-op when off or already done for this round)."""
    from loop.rounds.reward_refresh import refresh_round

    refresh_round(cfg, uow, round_id)


def evaluate(cfg: Config, uow: UnitOfWork, checkpoint_id: str) -> Wait | None:
    """None once the checkpoint's evaluation is stored; a human evaluation still waiting for answers returns
    what it waits for (the round stays `evaluating`)."""
    from loop.rounds.evaluating import evaluate_checkpoint

    result = evaluate_checkpoint(cfg, uow, checkpoint_id)
    return result if isinstance(result, Wait) else None
