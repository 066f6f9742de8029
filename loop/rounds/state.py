"""The round state machine, persisted in the `rounds` table.

    planned -> scored -> pushed -> collecting -> training -> evaluated -> done      (or cancelled / failed)
                                                   training -> evaluating -> evaluated  ([evaluation] judge = "human")

Each step does its (idempotent) work first and moves the status last, in its own transaction. A crash anywhere
leaves the round in the state whose work was interrupted; the next tick redoes that work, and because every
write is an upsert keyed on a natural key, nothing is lost or repeated.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from loop.config import Config
from loop.rounds.operator_settings import plan_for, record_action
from loop.rounds.waits import Wait, WaitKind
from storage.db import UnitOfWork
from storage.errors import PvarLoopError
from storage.locks import LeaseLost
from storage.models import Round
from storage.repositories.checkpoints import ensure_initial_checkpoint
from storage.repositories.rounds import (
    add_round,
    item_status_counts,
    latest_trained_policy,
    next_round_number,
    open_round,
    round_by_number,
)
from storage.statuses import PRODUCTION_ARM, ItemStatus, RoundStatus, is_production_arm

log = logging.getLogger(__name__)


class RoundError(PvarLoopError, ValueError):
    """A round command that cannot be carried out; the message says why."""


@dataclass
class Services:
    """The work each step delegates. Defaults are the real implementations; tests and experiments may swap
    one (e.g. a different annotation source) without touching the state machine."""

    score: Callable[[Config, UnitOfWork, str, int], None]
    push: Callable[[Config, UnitOfWork, int], None]
    pull: Callable[[Config, UnitOfWork, int], None]
    train: Callable[[Config, UnitOfWork, int], str | None]
    evaluate: Callable[[Config, UnitOfWork, str], Wait | None]  # a Wait: what a human evaluation waits for
    # The selection reward model learns from the round's labels ([reward] refresh); None: never refreshes.
    refresh_reward: Callable[[Config, UnitOfWork, int], None] | None = None
    # Takes the records of rounds that collect no more out of the annotators' queue; None: never.
    withdraw: Callable[[Config, UnitOfWork], object] | None = None

    @classmethod
    def default(cls) -> Services:
        from loop.rounds import steps

        return cls(
            score=steps.score,
            push=steps.push,
            pull=steps.pull,
            train=steps.train,
            evaluate=steps.evaluate,
            refresh_reward=steps.refresh_reward,
            withdraw=steps.withdraw,
        )


def _now() -> datetime:
    return datetime.now(UTC)


def latest_policy(session: Session, cfg: Config, arm: str = PRODUCTION_ARM) -> str:
    """The newest trained checkpoint of the arm, else the initial policy."""
    return latest_trained_policy(session, arm) or ensure_initial_checkpoint(session, cfg.policy.model)


def start_round(uow: UnitOfWork, cfg: Config, arm: str = PRODUCTION_ARM) -> tuple[Round | None, str]:
    """Open the next round with the budget/strategy in force for it. Returns (round or None, message)."""
    with uow() as session:
        current = open_round(session, arm)
        if current is not None:
            return None, f"round {current.number} is still {current.status}; one round at a time"
        number = next_round_number(session, arm)
        plan = plan_for(
            session, number, budget=cfg.selection.budget, strategy=cfg.selection.strategy, arm=arm
        )
        if plan.budget == 0:
            return None, f"budget is 0 for round {number}: new rounds are paused (`pvar-loop budget set N`)"
        rnd = add_round(
            session,
            arm=arm,
            number=number,
            budget=plan.budget,
            strategy=plan.strategy,
            seed=cfg.selection.seed + number,
            policy_in=latest_policy(session, cfg, arm),
        )
        log.info(
            "round %s/%s planned: %s, budget %s",
            arm,
            number,
            plan.strategy,
            plan.budget,
            extra={"event": "transition", "round": number, "to": "planned"},
        )
        return rnd, f"round {number} started ({plan.strategy}, budget {plan.budget})"


def cancel_round(uow: UnitOfWork, number: int, reason: str, arm: str = PRODUCTION_ARM) -> str:
    with uow() as session:
        rnd = round_by_number(session, number, arm)
        if rnd is None:
            raise RoundError(f"no round {number}")
        if rnd.status.is_closed:
            raise RoundError(f"round {number} is already {rnd.status}")
        _move(rnd, RoundStatus.CANCELLED, reason=reason)
        record_action(session, "cancel round", {"round": number, "reason": reason, "arm": arm})
    return f"round {number} cancelled; its prompts are free for later rounds"


def _move(rnd: Round, status: RoundStatus, reason: str | None = None) -> None:
    log.info(
        "round %s/%s: %s -> %s%s",
        rnd.arm,
        rnd.number,
        rnd.status,
        status,
        f" ({reason})" if reason else "",
        extra={"event": "transition", "round": rnd.number, "from": rnd.status, "to": status},
    )
    rnd.status = status
    rnd.reason = reason
    if status.is_closed:
        rnd.finished_at = _now()


def _crash_point(status: RoundStatus) -> None:
    """Test hook: PVAR_LOOP_FAULT_AT=<status> kills the process after that step's work, before its status
    moves (the worst moment: work done, not recorded as done)."""
    if os.environ.get("PVAR_LOOP_FAULT_AT") == status:
        log.warning("fault injection: killing the process after the work of %r", status)
        os.kill(os.getpid(), signal.SIGKILL)


def _load(session: Session, round_id: int) -> Round:
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise RoundError(f"round id {round_id} vanished")
    return rnd


def step(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> RoundStatus:
    """Advance one round by at most one state. Returns the status it is in afterwards."""
    with uow() as session:
        status = _load(session, round_id).status
    work = _STEPS.get(status)
    if work is not None:
        work(uow, cfg, round_id, services)
    with uow() as session:
        return _load(session, round_id).status


def _score_and_select(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> None:
    """planned -> scored: score the candidates under the round's policy, select and pair the top slice
    (cancelled when no prompt is left to select)."""
    with uow() as session:
        rnd = _load(session, round_id)
        policy_in = rnd.policy_in
        if not sum(item_status_counts(session, round_id).values()) and _wait_for_prompts(session, rnd):
            return  # the round stays planned; the next tick draws as soon as prompts are ingested
    services.score(cfg, uow, policy_in, round_id)
    with uow() as session:
        items = _plan_items(session, cfg, _load(session, round_id))
    _crash_point(RoundStatus.PLANNED)
    with uow() as session:
        rnd = _load(session, round_id)
        if items == 0:
            _move(rnd, RoundStatus.CANCELLED, reason="no selectable prompts left in the pool")
        else:
            _move(rnd, RoundStatus.SCORED)


def _wait_for_prompts(session: Session, rnd: Round) -> bool:
    """True, with the reason recorded and said once (not every tick), when the arm has no free prompt left."""
    from loop.rounds.candidates import POOL_EXHAUSTED, pool_exhausted

    if not pool_exhausted(session, rnd.arm):
        return False
    if rnd.reason != POOL_EXHAUSTED:
        log.warning("round %s/%s: %s", rnd.arm, rnd.number, POOL_EXHAUSTED, extra={"event": "pool exhausted"})
        rnd.reason = POOL_EXHAUSTED
    return True


def _push(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> None:
    """scored -> pushed: the items go to Argilla."""
    services.push(cfg, uow, round_id)
    _crash_point(RoundStatus.SCORED)
    with uow() as session:
        _move(_load(session, round_id), RoundStatus.PUSHED)


def _open_collection(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> None:
    """pushed -> collecting: the collection deadline starts."""
    with uow() as session:
        _load(session, round_id).deadline_at = _now() + timedelta(hours=cfg.scheduler.collect_deadline_hours)
    _crash_point(RoundStatus.PUSHED)
    with uow() as session:
        _move(_load(session, round_id), RoundStatus.COLLECTING)


def _collect(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> None:
    """collecting -> training once collection is done; until then a block is recorded on the round."""
    services.pull(cfg, uow, round_id)
    with uow() as session:
        rnd = _load(session, round_id)
        wait = collection_done(session, cfg, rnd)
        # A block (deadline passed, nothing decided) is kept for the record; progress is not stored,
        # `status` computes it from the items (see next_step), so it is never stale after a `pull`.
        blocked = wait.reason if wait is not None and wait.kind == WaitKind.BLOCKED else None
        if rnd.reason != blocked:
            rnd.reason = blocked
    if wait is None:
        _crash_point(RoundStatus.COLLECTING)
        with uow() as session:
            _move(_load(session, round_id), RoundStatus.TRAINING)
        _withdraw_unanswered(uow, cfg, round_id, services)


def _withdraw_unanswered(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> None:
    """Collection is over (at its deadline, some items unanswered): their records leave the annotators' queue
    as a cancelled round's do. Argilla being unreachable does not hold training up: the next pull retries."""
    if services.withdraw is None:
        return
    try:
        services.withdraw(cfg, uow)
    except PvarLoopError as e:
        log.warning(
            "round id %s: unanswered records stay in Argilla's queue until the next pull: %s", round_id, e
        )


def _train_and_evaluate(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> None:
    """training -> evaluated (or evaluating, while a human evaluation waits for its answers)."""
    if services.refresh_reward is not None:  # once per round: a recorded refresh is not redone
        services.refresh_reward(cfg, uow, round_id)
    checkpoint = services.train(cfg, uow, round_id)
    waiting = services.evaluate(cfg, uow, checkpoint) if checkpoint is not None else None
    _crash_point(RoundStatus.TRAINING)
    with uow() as session:
        rnd = _load(session, round_id)
        rnd.policy_out = checkpoint or rnd.policy_in
        if waiting is not None:  # a human evaluation: comparisons in Argilla, answers not yet
            _move(rnd, RoundStatus.EVALUATING)
        else:
            _move(
                rnd,
                RoundStatus.EVALUATED,
                reason=None if checkpoint else "no a/b decisions to train on; policy unchanged",
            )


def _await_evaluation(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> None:
    """evaluating -> evaluated once the human evaluation is answered and stored."""
    with uow() as session:
        checkpoint = _load(session, round_id).policy_out
    if services.evaluate(cfg, uow, checkpoint) is None:
        _crash_point(RoundStatus.EVALUATING)
        with uow() as session:
            _move(_load(session, round_id), RoundStatus.EVALUATED)


def _close(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> None:
    """evaluated -> done, keeping the reason (e.g. why the policy is unchanged)."""
    _crash_point(RoundStatus.EVALUATED)
    with uow() as session:
        rnd = _load(session, round_id)
        _move(rnd, RoundStatus.DONE, reason=rnd.reason)


# The work of each open state's step; a closed round has none.
_STEPS: dict[RoundStatus, Callable[[UnitOfWork, Config, int, Services], None]] = {
    RoundStatus.PLANNED: _score_and_select,
    RoundStatus.SCORED: _push,
    RoundStatus.PUSHED: _open_collection,
    RoundStatus.COLLECTING: _collect,
    RoundStatus.TRAINING: _train_and_evaluate,
    RoundStatus.EVALUATING: _await_evaluation,
    RoundStatus.EVALUATED: _close,
}


def _plan_items(session: Session, cfg: Config, rnd: Round) -> int:
    """Select and create this round's items, unless an earlier (crashed) run of this step already did."""
    existing = sum(item_status_counts(session, rnd.id).values())
    if existing:
        return existing
    from loop.rounds.candidates import selection_round
    from loop.rounds.pairing import create_items
    from loop.rounds.selection import choose
    from loop.scoring.pool import selection_reward_model

    reward_model = selection_reward_model(session, cfg, rnd.arm)  # the one scoring used just before
    chosen = choose(
        session,
        checkpoint_id=rnd.policy_in,
        reward_model=reward_model,
        strategy=rnd.strategy,
        budget=rnd.budget,
        seed=rnd.seed,
        arm=rnd.arm,
        # Production rounds only: an experiment arm's strategy must stay pure, arms compare strategies already.
        audit_fraction=cfg.selection.audit_fraction if is_production_arm(rnd.arm) else 0.0,
        among_round=selection_round(session, rnd.id),  # the round's drawn candidates only
    )
    if chosen.shortfall:
        log.warning(
            "round %s: budget %s but only %s prompts left; taking what is left",
            rnd.number,
            rnd.budget,
            len(chosen.picks),
        )
    written, ties = create_items(
        session,
        round_id=rnd.id,
        prompt_ids=[p.prompt_id for p in chosen.picks],
        checkpoint_id=rnd.policy_in,
        reward_model=reward_model,
        seed=rnd.seed,
        audit={p.prompt_id for p in chosen.picks if p.audit},
    )
    if ties:
        log.info(
            "round %s: %s selected prompts had identical responses and were not pushed", rnd.number, len(ties)
        )
    return written


def collection_done(session: Session, cfg: Config, rnd: Round) -> Wait | None:
    """None (done) when every item is answered by the required overlap, or at the deadline with enough
    decisions; else what collection waits for (progress, or a block someone must act on)."""
    counts = item_status_counts(session, rnd.id)
    total = sum(counts.values())
    settled = sum(counts.get(s, 0) for s in ItemStatus.settled_states())
    decided = counts.get(ItemStatus.DECIDED, 0)
    if total and settled == total:
        if decided:
            return None
        return Wait(WaitKind.BLOCKED, "every item answered but none decided (ties/discards only)")
    deadline = rnd.deadline_at
    if deadline and _now() >= deadline:
        if decided >= max(cfg.scheduler.min_decided, 1):
            return None
        return Wait(
            WaitKind.BLOCKED,
            f"deadline passed with {decided} decided labels, fewer than [scheduler] min_decided = "
            f"{cfg.scheduler.min_decided}; waiting for annotators",
        )
    until = f"deadline {deadline:%Y-%m-%d %H:%M} UTC" if deadline else "no deadline (waits for every answer)"
    return Wait(
        WaitKind.PROGRESS, f"collecting: {settled} of {total} items answered, {decided} decided; {until}"
    )


def tick(
    uow: UnitOfWork, cfg: Config, services: Services, arm: str = PRODUCTION_ARM, max_steps: int = 20
) -> str:
    """What the scheduler runs: advance the open round as far as it can go now, or start the next one."""
    for _ in range(max_steps):
        with uow() as session:
            rnd = open_round(session, arm)
            round_id = rnd.id if rnd else None
        if round_id is None:
            started, message = start_round(uow, cfg, arm)
            if started is None:
                return message
            continue
        before = _status(uow, round_id)
        after = _recorded_step(uow, cfg, round_id, services)
        if after == before or after.is_closed:
            with uow() as session:
                return f"round {_load(session, round_id).number}: {after}"
    return "tick step limit reached"


def _status(uow: UnitOfWork, round_id: int) -> RoundStatus:
    with uow() as session:
        return _load(session, round_id).status


def _fail_or_retry(uow: UnitOfWork, round_id: int, error: Exception) -> None:
    # Transient errors (Argilla down, a killed process) are retried by the next tick; the reason says why.
    with uow() as session:
        _load(session, round_id).reason = f"last attempt failed: {type(error).__name__}: {error}"[:2000]


def _recorded_step(uow: UnitOfWork, cfg: Config, round_id: int, services: Services) -> RoundStatus:
    """One step, its failure recorded on the round (what `status` shows) before it propagates."""
    try:
        return step(uow, cfg, round_id, services)
    except LeaseLost:
        raise  # another scheduler drives the rounds now: record nothing, not even this failure
    except Exception as e:
        if isinstance(e, PvarLoopError):  # a user-fixable error: its message says it all
            log.error("round step failed: %s", e)
        else:
            log.exception("round step failed")
        _fail_or_retry(uow, round_id, e)
        raise


# What the next step of a round in each open state does (`round status`, `round advance`).
NEXT_WORK = {
    RoundStatus.PLANNED: "score the round's candidates with its policy, select and pair the top slice",
    RoundStatus.SCORED: "push the items to Argilla",
    RoundStatus.PUSHED: "open collection (the deadline starts)",
    RoundStatus.COLLECTING: "pull the answers; on to training once collection is complete",
    RoundStatus.TRAINING: "refresh the selection reward model if [reward] refresh is on, DPO on the decided "
    "labels, then evaluate the new policy",
    RoundStatus.EVALUATING: "pull the human evaluation's answers; on once every comparison is answered",
    RoundStatus.EVALUATED: "close the round; the next one samples with its policy",
}


@dataclass(frozen=True)
class NextStep:
    """The by-hand command that does a round's next step, what it does, and why it cannot move yet (if so)."""

    command: str
    does: str
    waits: str | None = None


def advance_command(number: int, arm: str = PRODUCTION_ARM) -> str:
    return f"pvar-loop round advance {number}" + ("" if is_production_arm(arm) else f" --arm {arm}")


def next_step(session: Session, cfg: Config, rnd: Round) -> NextStep | None:
    """Computed from the database now (never a stored message): None for a closed round."""
    if rnd.status.is_closed:
        return None
    if rnd.status == RoundStatus.COLLECTING:
        wait = collection_done(session, cfg, rnd)
    elif rnd.status == RoundStatus.EVALUATING:
        from loop.rounds.human_evaluation import evaluation_waits

        wait = evaluation_waits(session, cfg, rnd.policy_out)
    else:
        wait = None
    waits = wait.reason if wait is not None else None
    return NextStep(advance_command(rnd.number, rnd.arm), NEXT_WORK[rnd.status], waits)


def advance_round(
    uow: UnitOfWork, cfg: Config, number: int, services: Services, arm: str = PRODUCTION_ARM
) -> tuple[RoundStatus, RoundStatus]:
    """`pvar-loop round advance N`: exactly the step the scheduler's tick would run next on round N (the same
    function, failures recorded the same way). The caller holds the scheduler lease. Returns (before, after)."""
    with uow() as session:
        rnd = round_by_number(session, number, arm)
        if rnd is None:
            raise RoundError(f"no round {number}" + ("" if is_production_arm(arm) else f" in arm {arm}"))
        if rnd.status.is_closed:
            raise RoundError(
                f"round {number} is {rnd.status}: a closed round does not move; `pvar-loop round start` "
                "opens the next one"
            )
        round_id, before = rnd.id, rnd.status
    return before, _recorded_step(uow, cfg, round_id, services)


def drive(
    uow: UnitOfWork, cfg: Config, round_id: int, services: Services, through: tuple[RoundStatus, ...]
) -> RoundStatus:
    """Step the round while it is in one of `through` and still moves (what a tick does): the by-hand
    `train`/`evaluate`/`push` run the remaining steps of their stage this way. Returns the final status."""
    status = _status(uow, round_id)
    while status in through:
        after = _recorded_step(uow, cfg, round_id, services)
        if after == status:
            break
        status = after
    return status
