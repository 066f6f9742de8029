"""The powered label-efficiency experiment: an RM-quality sweep in the paper's offline design.

The pool is sampled ONCE with the initial policy (K responses per prompt, stored), and every selection reward
model scores those same samples: stand-in RMs of controlled agreement with the annotator's gold
(loop/experiment/standin.py) and learned MiniLM RMs (one per seed: the RM draw is part of what a seed varies).
A cell is (RM, strategy, seed, budget): its arm selects `budget` prompts (pvar: top PVar under that RM; random:
uniform with that seed), the in-process annotator labels the pair the RM shows (best vs worst by that RM), and
DPO trains from the initial policy with that seed; the checkpoint is evaluated on the eval split with several
samples per prompt against the initial policy (whose samples are cached). Each cell is one round of the ordinary
round state machine under its own arm name, so a killed sweep resumes where it stopped (closed rounds are kept)
and every number stays in the database for `pvar-loop sweep report` to re-analyse.

Cells run headline-first (the largest budget for every RM), then the smaller budgets of the curve RM, so an
interrupted sweep already answers the main question.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loop.acquisition.strategies import Strategy
from loop.config import Config
from loop.experiment.runner import ArmSpec, arm_config, run_round, services_for
from loop.experiment.sweep.profiles import LEARNED, PREREGISTERED, PROFILES, STANDARD, TINY, SweepProfile
from loop.ml.loading import release_memory
from storage.db import UnitOfWork
from storage.repositories.rounds import round_status
from storage.statuses import RoundStatus

log = logging.getLogger(__name__)

ARMS = (Strategy.PVAR, Strategy.RANDOM)
# Re-exported: the profiles live in a light module the CLI can import without the database stack.
__all__ = [
    "LEARNED",
    "PREREGISTERED",
    "PROFILES",
    "STANDARD",
    "TINY",
    "Cell",
    "SweepProfile",
    "cells",
    "run_cells",
    "sweep_config",
]


MATCHED = "pvar-matched"  # PVar picks trained on as many pairs as the random cell of the same seed and budget


@dataclass(frozen=True)
class Cell:
    """(RM, strategy, seed, budget per round), over `rounds` rounds of the loop (each round scores the untaken
    pool with the cell's newest policy, labels `budget` more prompts, trains on from its last checkpoint on all
    its pairs). matched: PVar picks whose DPO runs take as many pairs (so optimizer steps) as the random cell's
    of the same seed, budget and round (loop/experiment/runner.py, pvar-matched)."""

    rm: str
    strategy: Strategy
    seed: int
    budget: int
    rounds: int = 1
    matched: bool = False

    @property
    def kind(self) -> str:
        return MATCHED if self.matched else str(self.strategy)

    @property
    def label(self) -> str:
        """The arm as the report names it: its kind, and its rounds when it has several (pvar-2r)."""
        return self.kind if self.rounds == 1 else f"{self.kind}-{self.rounds}r"

    @property
    def labels(self) -> int:
        return self.budget * self.rounds

    @property
    def arm(self) -> str:
        tail = "" if self.rounds == 1 else f".r{self.rounds}"
        return f"{self.kind}.{self.rm}.s{self.seed}.b{self.budget}{tail}"

    @property
    def reference(self) -> Cell | None:
        """The random cell whose pair counts a matched cell trains on."""
        if not self.matched:
            return None
        return Cell(self.rm, Strategy.RANDOM, self.seed, self.budget, self.rounds)

    @classmethod
    def parse(cls, arm: str) -> Cell | None:
        """The cell an arm name encodes, or None for an arm that is not a sweep cell."""
        parts = arm.split(".")
        rounds = 1
        if len(parts) >= 5 and parts[-1].startswith("r") and parts[-2].startswith("b"):
            rounds = int(parts[-1][1:]) if parts[-1][1:].isdigit() else 0
            parts = parts[:-1]
            if rounds < 2:  # one round is written without a suffix
                return None
        if len(parts) < 4 or not parts[-2].startswith("s") or not parts[-1].startswith("b"):
            return None
        try:
            matched = parts[0] == MATCHED
            strategy = Strategy.PVAR if matched else Strategy(parts[0])
            seed, budget = int(parts[-2][1:]), int(parts[-1][1:])
        except ValueError:
            return None
        return cls(".".join(parts[1:-2]), strategy, seed, budget, rounds, matched)


def grid_cells(p: SweepProfile, seed: int) -> list[Cell]:
    """One seed's cells of a profile with a grid: each entry (kind, budget[, rounds])."""
    out = []
    for kind, budget, *rest in p.grid:
        matched = kind == MATCHED
        strategy = Strategy.PVAR if matched else Strategy(kind)
        out.append(Cell(p.curve_rm, strategy, seed, budget, rest[0] if rest else 1, matched))
    return out


def cells(p: SweepProfile) -> Iterator[Cell]:
    """Headline first (largest budget, every RM), then the curve RM's smaller budgets, largest first. A profile
    with a grid runs exactly its cells of the curve RM, seed by seed."""
    if p.grid:
        for seed in p.seeds:
            yield from grid_cells(p, seed)
        return
    top = p.budgets[-1]
    for rm in (p.curve_rm, *[r for r in p.rm_keys if r != p.curve_rm]):
        for seed in p.seeds:
            for strategy in ARMS:
                yield Cell(rm, strategy, seed, top)
    for budget in reversed(p.budgets[:-1]):
        for seed in p.seeds:
            for strategy in ARMS:
                yield Cell(p.curve_rm, strategy, seed, budget)


def sweep_config(cfg: Config, p: SweepProfile) -> Config:
    """The world's config with the sweep's sampling/evaluation settings (applied in code, so --resume sees the
    same settings without rewriting the file)."""
    generation = cfg.generation.model_copy(update={"batch_size": p.batch_size, "backend": p.backend})
    evaluation = cfg.evaluation.model_copy(
        update={"judge": "verifier", "samples_per_prompt": p.samples_per_prompt}
    )
    reward = cfg.reward.model_copy(update={"refresh": "off"})  # each cell's selection RM is fixed
    return cfg.model_copy(update={"generation": generation, "evaluation": evaluation, "reward": reward})


@dataclass
class SelectionRMs:
    """The reward_model id of each (RM key, seed) and what the report needs to know about each RM."""

    ids: dict[tuple[str, int], str]
    facts: dict[str, dict]

    def id(self, rm: str, seed: int) -> str:
        return self.ids[(rm, seed)]


def write_json(path: Path, data: dict) -> None:
    """Atomically (temp file + rename): an interrupted sweep never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def run_cells(
    cfg: Config,
    uow: UnitOfWork,
    p: SweepProfile,
    rms: SelectionRMs,
    annotator,
    scorer_for: Callable[[str, int], Callable],
    *,
    on_cell: Callable[[Cell, str, float], None] | None = None,
    max_cells: int | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, str]:
    """Run every cell whose rounds are not all closed yet (a rerun resumes), at most max_cells of them this time;
    returns {arm: status of its last round} of every cell ("not run" for those left for later). shard (i, n): only
    the cells at positions i, i + n, ... of the run order, or with a grid, of the seeds at those positions (a
    matched cell then runs after its random reference, in the same worker)."""
    statuses, ran = {}, 0
    for position, cell in enumerate(cells(p)):
        with uow() as session:
            done = round_status(session, cell.rounds, cell.arm)
        if done is not None and done.is_closed:
            statuses[cell.arm] = str(done)
            continue
        unit = p.seeds.index(cell.seed) if p.grid else position
        mine = shard is None or unit % shard[1] == shard[0]
        if not mine or (max_cells is not None and ran >= max_cells):
            statuses[cell.arm] = "not run"
            continue
        ran += 1
        t0 = time.perf_counter()
        status = _run_cell(cfg, uow, cell, rms, annotator, scorer_for)
        release_memory()  # a worker runs cell after cell: what one freed must not pile up (loading.trim_heap)
        wall = time.perf_counter() - t0
        statuses[cell.arm] = str(status)
        log.info("cell %s: %s in %.0f s", cell.arm, status, wall)
        if on_cell is not None:
            on_cell(cell, str(status), wall)
    return statuses


def _run_cell(cfg: Config, uow: UnitOfWork, cell: Cell, rms: SelectionRMs, annotator, scorer_for):
    """The cell's rounds not closed yet, in order, up to the first that does not end done; the status of the
    last round it reached. Round 1 scores the stored initial samples; a later round's scoring samples the
    untaken pool with the cell's newest checkpoint."""
    options: dict = {"training": {"seed": cell.seed}}
    if cell.reference is not None:
        options["match_steps_to"] = cell.reference.arm
    arm = ArmSpec(cell.arm, cell.strategy, cell.seed, options)
    acfg = arm_config(cfg, arm, cell.budget)
    reward = acfg.reward.model_copy(update={"model": rms.id(cell.rm, cell.seed)})
    acfg = acfg.model_copy(update={"reward": reward})
    services = services_for(arm, annotator, score=scorer_for(cell.rm, cell.seed))
    status = None
    for number in range(1, cell.rounds + 1):
        with uow() as session:
            status = round_status(session, number, cell.arm)
        if status is None or not status.is_closed:
            _, status = run_round(uow, acfg, arm, services)
        if status != RoundStatus.DONE:  # the loop stops here: later rounds would be another design
            break
    return status
