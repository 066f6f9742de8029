"""Judges for the annotator bot: judge(prompt, response_a, response_b) -> "a" | "b" | "tie" | "discard".

Judges see the pair as Argilla shows it (after the position swap) and answer in that orientation, exactly
like a human annotator; the pull maps the answer back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping

import numpy as np

from storage.statuses import Choice

Judge = Callable[[str, str, str], str]


class RewardJudge:
    """Bradley-Terry annotator: prefers A with probability sigmoid((r_A - r_B) / temperature).

    `score(prompt, response) -> float` is any reward function. |r_A - r_B| < tie_margin answers "tie".
    The random draw is seeded by (seed, prompt, pair), so an answer does not depend on the order in
    which records arrive, and the same seed reproduces every answer.
    """

    def __init__(
        self,
        score: Callable[[str, str], float],
        seed: int = 0,
        *,
        temperature: float = 1.0,
        tie_margin: float = 0.0,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if tie_margin < 0:
            raise ValueError(f"tie_margin must be >= 0, got {tie_margin}")
        self.score, self.seed = score, seed
        self.temperature, self.tie_margin = temperature, tie_margin

    def p_a(self, prompt: str, response_a: str, response_b: str) -> float:
        diff = (self.score(prompt, response_a) - self.score(prompt, response_b)) / self.temperature
        return 1.0 / (1.0 + math.exp(-max(min(diff, 700.0), -700.0)))

    def __call__(self, prompt: str, response_a: str, response_b: str) -> str:
        gap = self.score(prompt, response_a) - self.score(prompt, response_b)
        if abs(gap) < self.tie_margin:
            return Choice.TIE
        digest = hashlib.sha256(
            "\x00".join((str(self.seed), prompt, response_a, response_b)).encode()
        ).digest()
        u = np.random.default_rng(int.from_bytes(digest[:8], "little")).random()
        return Choice.A if u < self.p_a(prompt, response_a, response_b) else Choice.B


class LookupJudge:
    """Replays known decisions: {(prompt, first, second): answer about (first, second)}.

    A pair shown the other way round is found too (a/b exchanged). Unknown pairs get `default`.
    """

    def __init__(self, decisions: Mapping[tuple[str, str, str], str], default: str = Choice.DISCARD) -> None:
        bad = {v for v in [*decisions.values(), default] if v not in tuple(Choice)}
        if bad:
            raise ValueError(f"LookupJudge answers must be one of {tuple(Choice)}, got {sorted(bad)}")
        self.decisions, self.default = dict(decisions), default

    def __call__(self, prompt: str, response_a: str, response_b: str) -> str:
        answer = self.decisions.get((prompt, response_a, response_b))
        if answer is not None:
            return answer
        answer = self.decisions.get((prompt, response_b, response_a))
        if answer is not None:
            return Choice(answer).flipped
        return self.default
