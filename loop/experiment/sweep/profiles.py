"""The sweep's sizes (loop/experiment/sweep/cells.py runs them). Light on purpose: the CLI lists the profiles
without importing the database or ML stack."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from loop.demo.run import FULL, QUICK, Profile
from storage.errors import PvarLoopError


class SweepProfileError(PvarLoopError, ValueError):
    """A sweep profile that cannot run (the message names the setting)."""


LEARNED = "learned"
GRID_KINDS = ("pvar", "random", "pvar-matched")
Key = tuple[str, str, int]  # (rm, arm as the report names it (pvar, random-2r, ...), labels in all)


@dataclass(frozen=True)
class SweepProfile:
    """The sweep's size. world: the demo world it runs in (pool, eval split, seed pool for the learned RM,
    K, sampling and DPO settings)."""

    name: str
    world: Profile
    budgets: tuple[int, ...]
    seeds: tuple[int, ...]
    standins: tuple[float, ...]  # target agreements of the stand-in RMs
    learned: bool  # also the learned MiniLM RM (one per seed)
    curve_rm: str  # the RM whose arms run at every budget ("learned" or e.g. "standin-0.75")
    samples_per_prompt: int  # eval samples per eval prompt
    batch_size: int  # generation batch (pool sampling and evaluation)
    backend: str = "auto"
    note: str = ""
    # The curve RM's cells per seed as (kind, budget) or (kind, budget per round, rounds), kind pvar, random or
    # pvar-matched (after the random entry it matches); empty: both arms at every budget, one round.
    grid: tuple[tuple, ...] = ()
    # A pre-registered contrast A - B, each (rm, arm, labels), and its non-inferiority margin.
    primary: tuple[Key, Key] | None = None
    margin: float | None = None
    # Further contrasts A - B and differences of contrasts (A - B) - (C - D), reported with their intervals.
    contrasts: tuple[tuple[Key, Key], ...] = ()
    interactions: tuple[tuple[Key, Key, Key, Key], ...] = ()

    def primary_facts(self) -> dict | None:
        if self.primary is None:
            return None
        return {"a": list(self.primary[0]), "b": list(self.primary[1]), "margin": self.margin}

    def contrast_facts(self) -> dict:
        """The further contrasts, for the run's facts (absent when there are none)."""
        out: dict = {}
        if self.contrasts:
            out["contrasts"] = [[list(k) for k in c] for c in self.contrasts]
        if self.interactions:
            out["interactions"] = [[list(k) for k in c] for c in self.interactions]
        return out

    def __post_init__(self) -> None:
        if sorted(set(self.budgets)) != list(self.budgets) or not self.budgets or self.budgets[0] < 1:
            raise SweepProfileError(
                f"profile {self.name}: budgets must be ascending and >= 1, got {self.budgets}"
            )
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise SweepProfileError(f"profile {self.name}: seeds must be distinct, got {self.seeds}")
        self._check_grid()
        if self.primary is not None and (self.margin is None or self.margin <= 0):
            raise SweepProfileError(f"profile {self.name}: a primary contrast needs a margin > 0")
        if self.curve_rm not in self.rm_keys:
            raise SweepProfileError(
                f"profile {self.name}: curve_rm {self.curve_rm!r} is not one of {self.rm_keys}"
            )

    def _check_grid(self) -> None:
        seen = set()
        for entry in self.grid:
            kind, budget, *rest = entry
            rounds = rest[0] if rest else 1
            if kind not in GRID_KINDS or budget not in self.budgets or len(rest) > 1 or rounds < 1:
                raise SweepProfileError(
                    f"profile {self.name}: grid entry {entry}: expected (kind, budget[, rounds]) with kind one "
                    f"of {', '.join(GRID_KINDS)} and budget among {self.budgets}"
                )
            if kind == "pvar-matched" and ("random", budget, rounds) not in seen:
                raise SweepProfileError(
                    f"profile {self.name}: grid entry {entry} needs ('random', {budget}, {rounds}) before it "
                    "(it trains on as many pairs as that cell)"
                )
            seen.add((kind, budget, rounds))

    @property
    def rounds(self) -> int:
        """The most rounds any cell runs."""
        return max((e[2] for e in self.grid if len(e) > 2), default=1)

    @property
    def rm_keys(self) -> tuple[str, ...]:
        return tuple(f"standin-{a:.2f}" for a in self.standins) + ((LEARNED,) if self.learned else ())


# Sized to the 2-hour budget on the project's 2-core CPU with `--jobs 2` (per 1-thread worker: ~0.3-0.4 s per eval
# answer, 15-19 s per DPO step); eval prompts were cut from the first run's 160 to 64 to fit that budget (the
# eval prompts are 30-75% of the per-seed variance of PVar - random: docs/experiment-results.md, "Variance
# components"). Measured end to end with --jobs 2: 78 min with vLLM and length-grouped DPO, the world's selection
# RM trained in the run (before them: 96 min with that RM cached, about 108 min without).
STANDARD = SweepProfile(
    name="standard",
    world=dataclasses.replace(FULL, name="sweep", n_train=256, n_eval=64, n_seed=384, budget=64, epochs=2),
    budgets=(8, 16, 32, 64),
    seeds=(0, 1, 2),
    standins=(0.6, 0.75, 0.9),
    learned=True,
    curve_rm="standin-0.75",
    samples_per_prompt=4,
    batch_size=32,
    note="2-core CPU, under 2 hours with --jobs 2",
)
# For a GPU machine (scripts/sweep-gpu): the same design at the scale the issue asks for and beyond.
LARGE = SweepProfile(
    name="large",
    world=dataclasses.replace(
        FULL,
        name="sweep-large",
        n_train=2000,
        n_eval=500,
        n_seed=1536,
        budget=400,
        epochs=2,
        max_new_tokens=64,
    ),
    budgets=(25, 50, 100, 200, 400),
    seeds=(0, 1, 2, 3, 4),
    standins=(0.6, 0.7, 0.8, 0.9),
    learned=True,
    curve_rm="learned",
    samples_per_prompt=8,
    batch_size=128,
    note="one GPU, a few hours",
)
# Tests only: tiny random models, seconds per cell.
TINY = SweepProfile(
    name="tiny",
    world=dataclasses.replace(QUICK, name="sweep-tiny", n_train=24, n_eval=6, budget=4, max_new_tokens=8),
    budgets=(2, 4),
    seeds=(0, 1),
    standins=(0.75,),
    learned=False,
    curve_rm="standin-0.75",
    samples_per_prompt=2,
    batch_size=8,
)
# The pre-registered design (docs/experiment.md, "Pre-registration"): learned RM, 16 seeds, PVar at 32 and 64
# labels, random at 64; 256 eval prompts x 1 sample (the same answers per checkpoint as 64 x 4, and no worse
# for any split of the eval noise: `python -m loop.experiment.sweep.power`). Fixed before any run.
PREREGISTERED = SweepProfile(
    name="preregistered",
    world=dataclasses.replace(
        FULL, name="sweep-prereg", n_train=256, n_eval=256, n_seed=384, budget=64, epochs=2
    ),
    budgets=(32, 64),
    seeds=tuple(range(16)),
    standins=(),
    learned=True,
    curve_rm=LEARNED,
    samples_per_prompt=1,
    batch_size=32,
    note="2-core CPU, --jobs 2; about 2.8 h (python -m loop.experiment.sweep.power)",
    grid=(("pvar", 64), ("random", 64), ("pvar", 32)),
    primary=((LEARNED, "pvar", 32), (LEARNED, "random", 64)),
    margin=0.01,
)
# The loop as operators run it (docs/experiment.md, "The sequential design"): 2 rounds x 32 labels, each round
# re-scoring the untaken pool with the cell's newest policy and training on from its checkpoint on all its
# pairs; PVar, random and PVar trained on random's pair count (step-matched), beside the offline 64-label cells
# of the same seeds, in the pre-registered world. About 1 h 50 min with --jobs 2 (measured per cell: the docs).
SEQ_PVAR, SEQ_RANDOM, SEQ_MATCHED = (
    (LEARNED, "pvar-2r", 64),
    (LEARNED, "random-2r", 64),
    (LEARNED, "pvar-matched-2r", 64),
)
OFF_PVAR, OFF_RANDOM = (LEARNED, "pvar", 64), (LEARNED, "random", 64)
SEQUENTIAL = SweepProfile(
    name="sequential",
    world=PREREGISTERED.world,
    budgets=(32, 64),
    seeds=tuple(range(8)),
    standins=(),
    learned=True,
    curve_rm=LEARNED,
    samples_per_prompt=1,
    batch_size=32,
    note="2-core CPU, --jobs 2; about 1 h 50 min (docs/experiment.md, the sequential design)",
    grid=(("pvar", 64), ("random", 64), ("pvar", 32, 2), ("random", 32, 2), ("pvar-matched", 32, 2)),
    contrasts=(
        (SEQ_PVAR, SEQ_RANDOM),
        (SEQ_PVAR, SEQ_MATCHED),
        (SEQ_PVAR, OFF_PVAR),
        (SEQ_RANDOM, OFF_RANDOM),
    ),
    interactions=((SEQ_PVAR, SEQ_RANDOM, OFF_PVAR, OFF_RANDOM),),
)
# Tests only: the sequential design on the tiny world.
TINY_SEQ_PVAR, TINY_SEQ_RANDOM = ("standin-0.75", "pvar-2r", 4), ("standin-0.75", "random-2r", 4)
TINY_SEQUENTIAL = dataclasses.replace(
    TINY,
    name="tiny-sequential",
    grid=(("pvar", 4), ("random", 4), ("pvar", 2, 2), ("random", 2, 2), ("pvar-matched", 2, 2)),
    contrasts=((TINY_SEQ_PVAR, TINY_SEQ_RANDOM),),
    interactions=(
        (TINY_SEQ_PVAR, TINY_SEQ_RANDOM, ("standin-0.75", "pvar", 4), ("standin-0.75", "random", 4)),
    ),
)
PROFILES = {p.name: p for p in (STANDARD, LARGE, TINY, PREREGISTERED, SEQUENTIAL, TINY_SEQUENTIAL)}
