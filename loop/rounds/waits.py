"""Why a round cannot move on yet, as a typed result (not a string to match): what collection_done and a human
evaluation answer when they are not finished. The reason is the line `round status` and the logs show."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class WaitKind(StrEnum):
    PROGRESS = "progress"  # collection moves: answers are coming in, nothing to record on the round
    BLOCKED = "blocked"  # cannot move without someone acting (deadline passed, nothing decided): recorded
    HUMAN_EVALUATION = "human evaluation"  # the comparisons are in Argilla, the answers are not yet


@dataclass(frozen=True)
class Wait:
    """What a round step waits for: its kind and the human-readable reason."""

    kind: WaitKind
    reason: str

    def __str__(self) -> str:
        return self.reason
