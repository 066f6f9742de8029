"""The label-efficiency experiment: several arms, each its own policy lineage, drawing from the same pool with
the same label budget per round, judged by the same simulated annotator, evaluated the same way.

An arm is rounds of the ordinary round state machine (loop/rounds/state.py) under `rounds.arm = <arm name>`: round N
of an arm starts from that arm's round N-1 checkpoint, and an arm only excludes prompts it took itself
(storage.repositories.candidates.taken_prompt_ids), so two arms may pick the same prompt. The annotator is in-process
(loop/experiment/annotator.py), never Argilla.

Controls that separate "PVar avoids ties" from "PVar picks more informative pairs":
- random-disagree: random among prompts whose shown pair the annotator would not call a tie. A learned reward
  model never ties exactly (pvar > 0 almost everywhere), so "disagree" comes from the simulated annotator's
  gold (ExperimentPlan.disagree, stored as the prompt score "disagree" by mark_disagreement): an oracle control
  for what perfect tie avoidance alone buys. Without a gold (replay), it falls back to pvar > 0.
- pvar-matched: PVar selection whose DPO run takes exactly as many optimizer steps as the reference arm's
  (random-s0) run of the same round. How: DPO here uses the same TrainingSettings for every arm, so its step
  count is epochs * ceil(pairs / (batch_size * gradient_accumulation_steps)). pvar-matched trains on exactly
  as many preference pairs as the reference run did (TrainingRun.label_count of the reference arm's round):
  a seeded subset of its own cumulative decided pairs when it has more, its pairs repeated in that seeded
  order when it has fewer. Equal pairs and equal settings give equal steps (the test checks the recorded
  TrainingRun.metrics["steps"]).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from loop.acquisition.strategies import Strategy
from loop.config import Config
from loop.rounds.state import Services, cancel_round, start_round, tick
from storage.db import UnitOfWork
from storage.errors import PvarLoopError
from storage.models import Round
from storage.repositories.items import DecidedPair
from storage.repositories.rounds import open_round, round_by_number, round_status
from storage.repositories.training_runs import latest_finished_run_of
from storage.statuses import PRODUCTION_ARM, RoundStatus, is_production_arm

log = logging.getLogger(__name__)


class ExperimentError(PvarLoopError, ValueError):
    """An experiment that cannot run as asked; the message names the arm or option."""


@dataclass(frozen=True)
class ArmSpec:
    """One arm: its name (rounds.arm), selection strategy, selection seed and options.

    options: "match_steps_to": <arm> (train with that arm's step count, see the module docstring);
    "training": {TrainingConfig field: value} overrides for this arm only.
    """

    name: str
    strategy: Strategy
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or is_production_arm(self.name):
            raise ExperimentError(
                f"arm name {self.name!r} is reserved or empty; production uses {PRODUCTION_ARM!r}"
            )
        if self.strategy not in tuple(Strategy):
            raise ExperimentError(
                f"arm {self.name}: unknown strategy {self.strategy!r}; allowed: {', '.join(Strategy)}"
            )
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        unknown = set(self.options) - {"match_steps_to", "training"}
        if unknown:
            raise ExperimentError(f"arm {self.name}: unknown option(s) {', '.join(sorted(unknown))}")


DEFAULT_ARMS: tuple[ArmSpec, ...] = (
    ArmSpec("pvar", Strategy.PVAR),
    ArmSpec("random-s0", Strategy.RANDOM, 0),
    ArmSpec("random-s1", Strategy.RANDOM, 1),
    ArmSpec("random-s2", Strategy.RANDOM, 2),
    ArmSpec("low-pvar", Strategy.LOW_PVAR),
    ArmSpec("reward-gap", Strategy.REWARD_GAP),
    ArmSpec("full", Strategy.FULL),
    ArmSpec("random-disagree", Strategy.RANDOM_DISAGREE),
    ArmSpec("pvar-matched", Strategy.PVAR, 0, {"match_steps_to": "random-s0"}),
)


def arms_by_name(names: Sequence[str]) -> list[ArmSpec]:
    """The default arms with these names, in the given order (error names the unknown one)."""
    known = {a.name: a for a in DEFAULT_ARMS}
    bad = [n for n in names if n not in known]
    if bad:
        raise ExperimentError(f"unknown arm(s) {', '.join(bad)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def ordered(arms: Sequence[ArmSpec]) -> list[ArmSpec]:
    """Arms in run order within a round: a step-matched arm after the arm it matches."""
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ExperimentError(f"arm names must be unique, got {names}")
    plain = [a for a in arms if "match_steps_to" not in a.options]
    matched = [a for a in arms if "match_steps_to" in a.options]
    for a in matched:
        ref = a.options["match_steps_to"]
        if ref not in {p.name for p in plain}:
            raise ExperimentError(
                f"arm {a.name}: match_steps_to={ref!r} must name another, unmatched arm of this experiment"
            )
    return plain + matched


def arm_config(cfg: Config, arm: ArmSpec, budget: int) -> Config:
    """The config one arm runs under: its strategy, seed and budget, plus its training overrides."""
    selection = cfg.selection.model_copy(
        update={"strategy": arm.strategy, "budget": budget, "seed": arm.seed}
    )
    training = cfg.training
    overrides = arm.options.get("training") or {}
    unknown = set(overrides) - set(type(training).model_fields)
    if unknown:
        raise ExperimentError(f"arm {arm.name}: unknown training option(s) {', '.join(sorted(unknown))}")
    if overrides:
        training = type(training).model_validate({**training.model_dump(), **overrides})
    return cfg.model_copy(update={"selection": selection, "training": training})


def _order_key(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def step_matched_pairs(reference_arm: str, seed: int = 0):
    """select_pairs hook for loop.rounds.training.train_round: as many pairs as the reference arm's run of the round."""

    def select_pairs(session: Session, rnd: Round, pairs: list[DecidedPair]) -> list[DecidedPair]:
        from loop.rounds.training import NoTrainingSignal

        ref = latest_finished_run_of(session, reference_arm, rnd.number)
        if ref is None:
            ref_round = round_by_number(session, rnd.number, reference_arm)
            if ref_round is None or not ref_round.status.is_closed:
                raise ExperimentError(
                    f"arm {rnd.arm} round {rnd.number}: reference arm {reference_arm} has not finished its "
                    "round yet (run it first)"
                )
            raise NoTrainingSignal(
                f"round {rnd.number}: reference arm {reference_arm} did not train in this round, so the "
                f"step-matched arm {rnd.arm} does not either"
            )
        order = sorted(pairs, key=lambda p: _order_key(seed, p.item_id))
        n = ref.label_count
        return [order[i % len(order)] for i in range(n)]

    return select_pairs


def _train_service(arm: ArmSpec) -> Callable[[Config, UnitOfWork, int], str | None]:
    from loop.rounds import steps

    ref = arm.options.get("match_steps_to")
    if ref is None:
        return steps.train
    hook = step_matched_pairs(ref, arm.seed)

    def train(cfg: Config, uow: UnitOfWork, round_id: int) -> str | None:
        from loop.rounds.training import NoTrainingSignal, train_round

        try:
            return train_round(cfg, uow, round_id, select_pairs=hook)
        except NoTrainingSignal as e:
            log.warning("%s", e)
            return None

    return train


@dataclass
class ExperimentPlan:
    """What run_experiment needs besides the config: arms, rounds, budget, the annotator and the services."""

    arms: list[ArmSpec]
    rounds: int
    budget: int
    score: Callable[[Config, UnitOfWork, str, int], None] | None = None  # default: sample + reward the pool
    # Called with (session, round) right after a round is planned, before its first step (replay mode
    # points policy_in at the dataset's pseudo-checkpoint here).
    prepare_round: Callable[[Session, Round], None] | None = None
    # differs(prompt, a, b): would the annotator see a difference? Feeds the random-disagree control
    # (default: the annotator's own `differs`, when it has one).
    disagree: Callable[[str, str, str], bool] | None = None

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ExperimentError(f"rounds must be >= 1, got {self.rounds}")
        if self.budget < 1:
            raise ExperimentError(f"budget must be >= 1, got {self.budget}")
        self.arms = ordered(self.arms)


def mark_disagreement(
    cfg: Config, uow: UnitOfWork, checkpoint_id: str, round_id: int, differs: Callable[[str, str, str], bool]
) -> int:
    """Store, per scored train prompt of (checkpoint, reward model), whether the annotator would see a difference
    in the pair a round would show (best vs worst by reward; loop.rounds.pairing). Returns the prompts marked."""
    from loop.rounds.pairing import best_and_worst
    from storage.repositories.prompts import prompt_texts
    from storage.repositories.scores import put_disagreement, scored_train_prompt_ids

    reward_model = cfg.reward.model
    with uow() as session:
        ids = scored_train_prompt_ids(session, checkpoint_id, reward_model)
        pairs = best_and_worst(session, ids, checkpoint_id, reward_model)
        texts = prompt_texts(session, ids)
        values = {
            pid: float(pid in pairs and differs(texts[pid], pairs[pid][0].text, pairs[pid][1].text))
            for pid in ids
        }
        put_disagreement(session, checkpoint_id, reward_model, values, k=cfg.generation.k, round_id=round_id)
    log.info(
        "round id %s: %d of %d prompts disagree for the annotator",
        round_id,
        sum(values.values()),
        len(values),
    )
    return len(values)


def services_for(arm: ArmSpec, annotator, score=None, disagree=None) -> Services:
    """The round services of one arm: the real scoring/training/evaluation, the simulated annotator (and, for
    random-disagree with a known gold, the annotator's view of which pairs tie, stored after scoring)."""
    from loop.rounds import steps

    score = score or steps.score
    if arm.strategy == Strategy.RANDOM_DISAGREE and disagree is not None:
        plain_score = score

        def score(cfg: Config, uow: UnitOfWork, checkpoint_id: str, round_id: int) -> None:
            plain_score(cfg, uow, checkpoint_id, round_id)
            mark_disagreement(cfg, uow, checkpoint_id, round_id, disagree)

    return Services(
        score=score,
        push=annotator.push,
        pull=annotator.pull,
        train=_train_service(arm),
        evaluate=steps.evaluate,
    )


def run_round(
    uow: UnitOfWork, cfg: Config, arm: ArmSpec, services: Services, prepare_round=None
) -> tuple[int, RoundStatus]:
    """Plan the arm's next round and drive it to a closed state. Returns (round id, final status)."""
    with uow() as session:
        current = open_round(session, arm.name)
        round_id = current.id if current else None
    if round_id is None:
        rnd, message = start_round(uow, cfg, arm.name)
        if rnd is None:
            raise ExperimentError(f"arm {arm.name}: {message}")
        with uow() as session:
            round_id = round_by_number(session, rnd.number, arm.name).id
            if prepare_round is not None:
                prepare_round(session, session.get(Round, round_id))
    last = None
    while True:
        tick(uow, cfg, services, arm=arm.name)
        with uow() as session:
            rnd = session.get(Round, round_id)
            status, number = rnd.status, rnd.number
        if status.is_closed:
            return round_id, status
        if status == last:  # the simulated annotator answered everything and the round still cannot move
            cancel_round(uow, number, f"experiment: round stuck in {status}: {rnd.reason}", arm=arm.name)
            return round_id, RoundStatus.CANCELLED
        last = status


def run_experiment(
    cfg: Config,
    uow: UnitOfWork,
    plan: ExperimentPlan,
    annotator,
    *,
    out: Path | None = None,
    on_round: Callable[[dict], None] | None = None,
) -> dict:
    """Run every arm for plan.rounds rounds (round by round, all arms per round) and return the results.

    Rerunning is safe: rounds already closed are kept, an open one is finished. The results file (if `out`)
    is rewritten atomically after every round, so an interrupted experiment leaves a consistent file.
    """
    from loop.experiment.results import collect_results, write_results

    if cfg.evaluation.judge == "human":
        raise ExperimentError(
            '[evaluation] judge = "human" waits for people; an experiment labels with a simulated annotator '
            'and evaluates every round at once: set judge = "verifier" or a reward model for it'
        )
    arms = plan.arms
    disagree = plan.disagree or getattr(annotator, "differs", None)
    meta = {"rounds": plan.rounds, "budget": plan.budget, "arms": [a.__dict__ for a in arms]}
    for number in range(1, plan.rounds + 1):
        for arm in arms:
            with uow() as session:
                done = round_status(session, number, arm.name)
            if done is not None and done.is_closed:
                continue
            t0 = time.perf_counter()
            acfg = arm_config(cfg, arm, plan.budget)
            _, status = run_round(
                uow, acfg, arm, services_for(arm, annotator, plan.score, disagree), plan.prepare_round
            )
            log.info("arm %s round %s: %s in %.1f s", arm.name, number, status, time.perf_counter() - t0)
            with uow() as session:
                results = collect_results(session, cfg, arms, meta)
            if out is not None:
                write_results(results, out)
            if on_round is not None:
                row = next(r for r in results["arms"][arm.name]["rounds"] if r["number"] == number)
                on_round({"arm": arm.name, **row})
    with uow() as session:
        results = collect_results(session, cfg, arms, meta)
    if out is not None:
        write_results(results, out)
    return results
