"""The vocabularies the database stores (statuses, answers, metrics) and the production arm's name, each
defined once with its named groups.

StrEnum members ARE their strings: the values below are exactly what the columns have always stored, so a
database written before these enums reads back unchanged (no data migration).
"""

from __future__ import annotations

from enum import StrEnum


class RoundStatus(StrEnum):
    """planned -> scored -> pushed -> collecting -> training [-> evaluating] -> evaluated -> done (or
    cancelled / failed)."""

    PLANNED = "planned"
    SCORED = "scored"
    PUSHED = "pushed"
    COLLECTING = "collecting"
    TRAINING = "training"
    EVALUATING = "evaluating"  # waits for a human evaluation's answers ([evaluation] judge = "human")
    EVALUATED = "evaluated"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    def __repr__(self) -> str:  # 'done', as the plain strings printed before: messages and logs stay the same
        return repr(self.value)

    @property
    def is_closed(self) -> bool:
        """A closed round never moves again; an arm has at most one round that is not closed."""
        return self in (RoundStatus.DONE, RoundStatus.CANCELLED, RoundStatus.FAILED)

    @property
    def collects(self) -> bool:
        """Its items' decisions still follow the answers. From training on (and once closed) they are the
        record of what was trained on: later answers are stored and reported, never re-decided."""
        return self in (RoundStatus.PLANNED, RoundStatus.SCORED, RoundStatus.PUSHED, RoundStatus.COLLECTING)

    @property
    def frees_prompts(self) -> bool:
        """A cancelled or failed round gives its (unlabelled) prompts back to the pool; a done one does not."""
        return self in (RoundStatus.CANCELLED, RoundStatus.FAILED)

    @classmethod
    def open_states(cls) -> tuple[RoundStatus, ...]:
        return tuple(s for s in cls if not s.is_closed)

    @classmethod
    def closed_states(cls) -> tuple[RoundStatus, ...]:
        return tuple(s for s in cls if s.is_closed)

    @classmethod
    def freeing_states(cls) -> tuple[RoundStatus, ...]:
        return tuple(s for s in cls if s.frees_prompts)


class ItemStatus(StrEnum):
    """pending (in our DB only) -> pushed (in Argilla) -> decided | undecided (after aggregating labels)."""

    PENDING = "pending"
    PUSHED = "pushed"
    DECIDED = "decided"
    UNDECIDED = "undecided"

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def is_pushed(self) -> bool:
        """Sent to the annotators (whatever came back since)."""
        return self is not ItemStatus.PENDING

    @property
    def is_settled(self) -> bool:
        """Answered by enough annotators: decided, or undecided (ties/discards/split votes)."""
        return self in (ItemStatus.DECIDED, ItemStatus.UNDECIDED)

    @classmethod
    def pushed_states(cls) -> tuple[ItemStatus, ...]:
        return tuple(s for s in cls if s.is_pushed)

    @classmethod
    def settled_states(cls) -> tuple[ItemStatus, ...]:
        return tuple(s for s in cls if s.is_settled)


class Choice(StrEnum):
    """An annotator's answer about a pair in OUR orientation (a = generation_a, the higher-reward response):
    what `labels.choice` stores. `annotation_items.decision` stores the majority vote (a, b or tie)."""

    A = "a"
    B = "b"
    TIE = "tie"
    DISCARD = "discard"

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def votes(self) -> bool:
        """a, b and tie are votes; a discard is an answer (it counts towards the overlap) that does not vote."""
        return self is not Choice.DISCARD

    @property
    def prefers(self) -> bool:
        """A preference between the two responses (a training pair): a or b, not a tie."""
        return self in (Choice.A, Choice.B)

    @property
    def flipped(self) -> Choice:
        """The same answer about the pair shown the other way round: a and b exchange, tie and discard stay."""
        return {Choice.A: Choice.B, Choice.B: Choice.A}.get(self, self)

    @classmethod
    def voting(cls) -> tuple[Choice, ...]:
        return tuple(c for c in cls if c.votes)

    @classmethod
    def preferring(cls) -> tuple[Choice, ...]:
        return tuple(c for c in cls if c.prefers)


class Verdict(StrEnum):
    """What a human evaluation's answer says about the checkpoint (`eval_comparisons.answers`), the side swap
    undone: the answer in the comparison's orientation is a Choice, a = the checkpoint's response."""

    POLICY = "policy"
    REFERENCE = "reference"
    TIE = "tie"
    DISCARD = "discard"

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def choice(self) -> Choice:
        """The answer this verdict is, in the comparison's orientation (policy = a)."""
        return _CHOICE_OF_VERDICT[self]

    @classmethod
    def of(cls, choice: Choice | str) -> Verdict:
        """The verdict of an answer in the comparison's orientation."""
        return _VERDICT_OF_CHOICE[Choice(choice)]


_CHOICE_OF_VERDICT = {
    Verdict.POLICY: Choice.A,
    Verdict.REFERENCE: Choice.B,
    Verdict.TIE: Choice.TIE,
    Verdict.DISCARD: Choice.DISCARD,
}
_VERDICT_OF_CHOICE = {c: v for v, c in _CHOICE_OF_VERDICT.items()}


class TrainingRunStatus(StrEnum):
    """running (DPO under way, or killed) -> done (its checkpoint is registered)."""

    RUNNING = "running"
    DONE = "done"

    def __repr__(self) -> str:
        return repr(self.value)


class Metric(StrEnum):
    """The per-prompt scores `prompt_scores.metric` names."""

    PVAR = "pvar"
    REWARD_GAP = "reward_gap"
    # The prompt's samples could not be ranked (fewer than 2 scorable responses; value = how many were).
    EXCLUDED = "excluded"
    # 1.0/0.0: the experiment's simulated annotator would (not) see a difference in the shown pair (an oracle
    # only experiments have; see loop.experiment.runner.mark_disagreement).
    DISAGREE = "disagree"

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def marks_scored(self) -> bool:
        """A prompt counts as scored for (checkpoint, reward model) once it has a pvar or an excluded row."""
        return self in (Metric.PVAR, Metric.EXCLUDED)

    @classmethod
    def scored_markers(cls) -> tuple[Metric, ...]:
        return tuple(m for m in cls if m.marks_scored)


PRODUCTION_ARM = "main"  # `rounds.arm` / `loop_settings.arm` of the production loop; experiments name others


def is_production_arm(arm: str) -> bool:
    """Whether `arm` is the production loop rather than an experiment arm. Production alone draws audit picks,
    refreshes the selection reward model and selects with the refreshed one; experiment arms compare
    strategies, so each stays a pure strategy under one fixed reward model. Experiment names cannot be
    PRODUCTION_ARM (loop.experiment.runner refuses it), so the name alone decides."""
    return arm == PRODUCTION_ARM


class CommandState(StrEnum):
    """An operator command recorded while a scheduler runs (`operator_commands.state`): pending until the
    scheduler's next tick carries it out, then done or failed (the outcome says what happened)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
