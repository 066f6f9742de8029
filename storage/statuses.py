"""The status vocabularies of rounds and annotation items, with their named groups defined once.

StrEnum members ARE their strings: the values below are exactly what the `status` columns have always stored,
so a database written before these enums reads back unchanged (no data migration).
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
