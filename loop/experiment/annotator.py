"""The experiment's in-process annotator: a judge answers every item of a round, and the answers become Labels
and item decisions exactly as `annotation.gateway.pull_labels` would store them.

Experiments simulate the annotator so that many arms can be compared cheaply and reproducibly; production
labels always come through Argilla (loop/rounds/steps.py push/pull). Only the transport differs: the judge sees
the pair as Argilla would show it (after the position swap), its answer is mapped back to our orientation, and
the same aggregation (annotation.aggregate.decide) and repository functions (storage.repositories.items and
labels) are used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from annotation.aggregate import decide
from annotation.simulated.judges import Judge, LookupJudge, RewardJudge
from loop.config import Config
from storage.db import UnitOfWork
from storage.repositories import items as repo
from storage.repositories import labels as label_repo
from storage.repositories.prompts import constraints_by_text
from storage.statuses import Choice

SIM_RECORD_PREFIX = "sim-"  # argilla_record_id of a simulated push: no Argilla record exists


class SimulatedAnnotation:
    """push/pull services for loop.rounds.state.Services backed by judges instead of Argilla.

    judges: (annotator name, judge) pairs; every judge answers every item, and an item is settled once all of
    them have answered (the overlap is len(judges)).
    """

    def __init__(self, judges: Sequence[tuple[str, Judge]]) -> None:
        if not judges:
            raise ValueError("SimulatedAnnotation needs at least one (name, judge) pair")
        names = [n for n, _ in judges]
        if len(set(names)) != len(names):
            raise ValueError(f"annotator names must be unique, got {names}")
        self.judges = list(judges)
        # differs(prompt, a, b): would the annotator see a difference (None: unknown, e.g. replayed labels)
        self.differs: Callable[[str, str, str], bool] | None = None

    def push(self, cfg: Config, uow: UnitOfWork, round_id: int) -> None:
        """Mark the round's items as shown to the annotators (the record id says no Argilla record exists)."""
        with uow() as session:
            items = repo.items_to_push(session, round_id)
            repo.mark_pushed(session, {i.id: f"{SIM_RECORD_PREFIX}{i.id}" for i in items})

    def pull(self, cfg: Config, uow: UnitOfWork, round_id: int) -> None:
        """Have every judge answer every pushed item without a label from it; then aggregate the round."""
        now = datetime.now(UTC)
        with uow() as session:
            contents = {c.id: c for c in repo.items_to_push(session, round_id, include_pushed=True)}
            stored = label_repo.labels_of(session, round_id)
            writes = []
            for item in repo.pushed_items(session, round_id):
                c = contents[item.id]
                shown_a, shown_b = (c.text_b, c.text_a) if c.swapped else (c.text_a, c.text_b)
                for name, judge in self.judges:
                    key = f"{SIM_RECORD_PREFIX}{name}"  # the simulated annotator's user id
                    if (item.id, key) in stored:
                        continue  # labels are final once given (a rerun adds nothing)
                    answer = judge(c.prompt, shown_a, shown_b)
                    if c.swapped and answer in Choice.preferring():  # back to our orientation
                        answer = Choice(answer).flipped
                    row = label_repo.LabelRow(item.id, name, answer, None, now, annotator_id=key)
                    writes.append(row)
                    stored[(item.id, key)] = row
            label_repo.add_label_versions(session, writes)
            _aggregate(session, round_id, label_repo.labels_of(session, round_id), need=len(self.judges))


def _aggregate(session, round_id: int, stored: dict, need: int) -> None:
    """Majority vote per item of the round (annotation.aggregate.decide); writes only changed outcomes."""
    answers: dict[str, list[str]] = {}
    for (item_id, _annotator), row in stored.items():
        answers.setdefault(item_id, []).append(row.choice)
    changes = []
    for item in repo.pushed_items(session, round_id):
        decision = decide(answers.get(item.id, []), need)
        status = decision.status.item_status
        if (status, decision.choice, decision.votes) != (item.status, item.decision, item.votes):
            changes.append((item.id, status, decision.choice, decision.votes))
    repo.set_outcomes(session, changes)
    label_repo.link_latest(session, [i.id for i in repo.pushed_items(session, round_id)], stored)


def score_annotation(
    score: Callable[[str, str], float],
    name: str,
    *,
    seed: int = 0,
    tie_margin: float = 1e-9,
    temperature: float = 0.1,
) -> SimulatedAnnotation:
    """One Bradley-Terry annotator (annotation.simulated.judges.RewardJudge) on `score(prompt, response)`.

    Pairs whose scores differ by less than tie_margin are ties: this is where prompts without disagreement
    waste labels. A low temperature makes a clear score difference an almost sure preference.
    """
    judge = RewardJudge(score, seed, temperature=temperature, tie_margin=tie_margin)
    annotation = SimulatedAnnotation([(f"{name}-s{seed}", judge)])
    annotation.differs = lambda prompt, a, b: abs(score(prompt, a) - score(prompt, b)) >= tie_margin
    return annotation


def verifier_annotation(uow: UnitOfWork, *, seed: int = 0, tie_margin: float = 1e-9) -> SimulatedAnnotation:
    """The demo world's gold annotator: the rule-based verifier's share of satisfied constraints. Responses
    that satisfy equally many constraints tie; one constraint more (a gap of 0.5 or 1.0) is a near-sure win."""
    from loop.evaluation.verifier import verify

    with uow() as session:
        constraints = constraints_by_text(session)
    if not any(constraints.values()):
        raise ValueError("no prompt carries metadata.constraints: the verifier annotator cannot judge them")

    def score(prompt: str, response: str) -> float:
        found = constraints.get(prompt)
        if not found:
            raise ValueError(f"prompt without metadata.constraints: {prompt[:60]!r}")
        return verify(response, found)

    return score_annotation(score, "sim-verifier", seed=seed, tie_margin=tie_margin)


def lookup_annotation(judge: LookupJudge, name: str = "sim-lookup") -> SimulatedAnnotation:
    """Replay: one annotator answering from labels that already exist in the dataset."""
    return SimulatedAnnotation([(name, judge)])
