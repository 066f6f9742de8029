"""`[selection] candidates`: a round scores only a seeded sample of the free pool and selects among it, so its
scoring cost follows the candidate count, not the pool size. Real SQLite, tiny real models, the real round
step (planned -> scored) and the real CLI."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3

import pytest
from sqlalchemy import select

from loop.config import load_config
from loop.rounds.candidates import candidate_prompt_ids
from loop.rounds.selection import choose
from loop.rounds.state import Services, start_round, step
from loop.scoring.pool import FAULT_ENV, selection_reward_model
from storage.db import UnitOfWork, make_engine
from storage.repositories.rounds import round_by_number
from storage.statuses import RoundStatus
from tests.support.scoring_project import Project, make_project

K = 3
DONE = "SELECT COUNT(*) FROM prompt_scores WHERE metric IN ('pvar', 'excluded')"
COST = (
    "SELECT candidates, free_pool, drawn, prompts_scored, samples_generated, tokens_generated, scoring_s "
    "FROM round_scoring WHERE round_id = ?"
)


@pytest.fixture(scope="module")
def pools(tmp_path_factory, tiny_models) -> dict[int, Project]:
    """Unscored projects of 40 and 120 train prompts; tests work on copies of their databases."""
    out = {}
    for n in (40, 120):
        root = tmp_path_factory.mktemp(f"pool{n}")
        project = make_project(root, tiny_models.policy_dir, tiny_models.reward_dir, n, k=K, batch_size=4)
        with sqlite3.connect(project.db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out[n] = project
    return out


def _copy(template: Project, root, selection: str) -> Project:
    """A private copy of the template's database with `selection` as the config's [selection] table."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "pvar-loop.db"
    shutil.copy(template.db, db)
    config = root / "pvar-loop.toml"
    text = template.config.read_text(encoding="utf-8").replace(str(template.root / "data"), str(root))
    config.write_text(text + f'\n[database]\nurl = "sqlite:///{db}"\n[selection]\n{selection}\n', "utf-8")
    return Project(root, config, db)


def _plan_round(project: Project, number: int = 1) -> tuple[int, RoundStatus]:
    """Start round `number` and run its first step (score the candidates, select, pair): planned -> scored."""
    cfg = load_config(project.config, env={})
    uow = UnitOfWork(make_engine(cfg.database_url))
    rnd, message = start_round(uow, cfg)
    assert rnd is not None, message
    with uow() as s:
        round_id = round_by_number(s, number).id
    return round_id, step(uow, cfg, round_id, Services.default())


def _candidates(project: Project, round_id: int) -> set[str]:
    return {
        p for (p,) in project.query("SELECT prompt_id FROM round_candidates WHERE round_id = ?", round_id)
    }


def _items(project: Project, round_id: int) -> set[str]:
    return {
        p for (p,) in project.query("SELECT prompt_id FROM annotation_items WHERE round_id = ?", round_id)
    }


def test_scoring_cost_follows_candidates_not_pool_size(pools, tmp_path):
    """(a) With candidates = 8, a pool of 40 and one of 120 score 8 prompts each and sample 8 x K responses;
    doubling candidates doubles the cost."""
    cost = {}
    for name, pool, n in (("small", 40, 8), ("large", 120, 8), ("double", 40, 16)):
        project = _copy(pools[pool], tmp_path / name, f"candidates = {n}\nbudget = 2")
        round_id, status = _plan_round(project)
        assert status == RoundStatus.SCORED
        assert project.count(DONE) == n  # only the candidates were scored, whatever the pool holds
        assert project.count("SELECT COUNT(*) FROM generations") == n * K
        asked, free, drawn, scored, samples, tokens, seconds = project.query(COST, round_id)[0]
        assert (asked, free, drawn, scored, samples) == (n, pool, n, n, n * K)
        assert tokens > 0 and seconds > 0
        cost[name] = samples
    assert cost["small"] == cost["large"] == cost["double"] // 2


def test_selection_picks_only_candidates_drawn_from_the_free_pool(pools, tmp_path, capsys):
    """(b) The round's items are among its candidates; the next round draws from the prompts still free and
    reuses the scores its policy already has. status and report show each round's draw and cost."""
    project = _copy(pools[40], tmp_path, "candidates = 8\nbudget = 3\naudit_fraction = 0.0")
    first, status = _plan_round(project)
    assert status == RoundStatus.SCORED
    candidates, items = _candidates(project, first), _items(project, first)
    assert len(candidates) == 8 and items and items <= candidates

    # The selection among the candidates is the strategy's own ranking of them (the top PVar of the 8).
    pvar = dict(project.query("SELECT prompt_id, value FROM prompt_scores WHERE metric = 'pvar'"))
    ranked = sorted((p for p in candidates if p in pvar), key=lambda p: -pvar[p])
    assert items <= set(ranked[:3])

    # Round 1 closes (as done: its items stay taken) so round 2 can start.
    with sqlite3.connect(project.db) as conn:
        conn.execute("UPDATE rounds SET status = 'done' WHERE id = ?", (first,))
    second, status = _plan_round(project, number=2)
    assert status == RoundStatus.SCORED
    again = _candidates(project, second)
    assert len(again) == 8 and not again & items  # round 1's items are taken, not candidates
    assert _items(project, second) <= again
    reused = again & candidates  # same policy and reward model: scored already, not sampled again
    asked, free, drawn, scored, samples, *_ = project.query(COST, second)[0]
    assert (asked, free, drawn) == (8, 40 - len(items), 8)
    assert (scored, samples) == (8 - len(reused), (8 - len(reused)) * K)
    assert project.count(DONE) == len(candidates | again)

    capsys.readouterr()
    assert project.cli("status", "--json") == 0
    rounds = {r["number"]: r for r in json.loads(capsys.readouterr().out)["rounds"]}
    assert rounds[1]["scoring"]["drawn"] == 8 and rounds[1]["scoring"]["samples_generated"] == 8 * K
    assert rounds[2]["scoring"]["prompts_scored"] == 8 - len(reused)
    assert project.cli("status") == 0
    text = capsys.readouterr().out
    assert f"scoring: 8 candidates of 40 free prompts; 8 prompts scored, {8 * K} samples" in text
    assert project.cli("report", "--out", str(tmp_path / "report")) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["scoring"]["drawn"] for r in report["rounds"]] == [8, 8]
    html = (tmp_path / "report" / "index.html").read_text()
    assert "8 of 40" in html and f"8 scored, {8 * K} samples" in html


def test_same_seed_draws_the_same_candidates(pools, tmp_path):
    """(c) The draw is seeded by the round: the same [selection] seed gives the same set on another copy of
    the pool, another seed another set; once drawn, the set is read back, never drawn again."""
    drawn = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        project = _copy(pools[120], tmp_path / name, f"candidates = 8\nseed = {seed}")
        cfg = load_config(project.config, env={})
        uow = UnitOfWork(make_engine(cfg.database_url))
        start_round(uow, cfg)
        with uow() as s:
            round_id = round_by_number(s, 1).id
        drawn[name] = candidate_prompt_ids(cfg, uow, round_id)
        assert len(set(drawn[name])) == 8 and _candidates(project, round_id) == set(drawn[name])
        other = cfg.model_copy(update={"selection": cfg.selection.model_copy(update={"candidates": 30})})
        assert candidate_prompt_ids(other, uow, round_id) == sorted(drawn[name])
    assert sorted(drawn["a"]) == sorted(drawn["b"]) and set(drawn["a"]) != set(drawn["c"])


def test_resume_after_a_kill_mid_scoring_keeps_the_candidates(pools, tmp_path, capsys):
    """(d) `round advance` killed after the first committed batch: the resumed step scores the rest of the
    same candidates (even with another [selection] candidates in the config), nothing twice."""
    project = _copy(pools[40], tmp_path, "candidates = 8\nbudget = 2")
    assert project.cli("round", "start") == 0
    proc = project.spawn("round", "advance", "1", env={FAULT_ENV: "after-commit:1"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    (round_id,) = project.query("SELECT id FROM rounds WHERE number = 1")[0]
    candidates = _candidates(project, round_id)
    assert len(candidates) == 8 and project.count(DONE) == 4  # batch 1 of 2 committed
    assert project.query(COST, round_id)[0][3:5] == (4, 4 * K)

    # Resume the step in this process (the killed by-hand lease holder blocks `round advance` for 30 s) with
    # another candidate count in the config: a second draw would take 20.
    config = project.config.read_text(encoding="utf-8").replace("candidates = 8", "candidates = 20")
    project.config.write_text(config, encoding="utf-8")
    cfg = load_config(project.config, env={})
    assert step(UnitOfWork(make_engine(cfg.database_url)), cfg, round_id, Services.default()) == "scored"
    assert _candidates(project, round_id) == candidates
    scored = {
        p
        for (p,) in project.query("SELECT prompt_id FROM prompt_scores WHERE metric IN ('pvar', 'excluded')")
    }
    assert scored == candidates
    keys = project.query("SELECT prompt_id, sample_index FROM generations")
    assert len(keys) == len(set(keys)) == 8 * K
    assert project.query(COST, round_id)[0][:5] == (8, 40, 8, 8, 8 * K)  # each batch counted once
    assert _items(project, round_id) <= candidates


def test_zero_candidates_scores_and_selects_from_the_whole_pool(pools, tmp_path):
    """(f) candidates = 0: the old behaviour, every free prompt scored and the top slice of the whole pool."""
    project = _copy(pools[40], tmp_path, "candidates = 0\nbudget = 3")
    round_id, status = _plan_round(project)
    assert status == RoundStatus.SCORED
    assert project.count(DONE) == 40 and project.count("SELECT COUNT(*) FROM round_candidates") == 0
    asked, free, drawn, scored, samples, *_ = project.query(COST, round_id)[0]
    assert (asked, free, drawn, scored, samples) == (None, 40, None, 40, 40 * K)
    cfg = load_config(project.config, env={})
    uow = UnitOfWork(make_engine(cfg.database_url))
    with uow() as s:
        rnd = round_by_number(s, 1)
        whole = choose(
            s,
            checkpoint_id=rnd.policy_in,
            reward_model=selection_reward_model(s, cfg),
            strategy="pvar",
            budget=3,
            seed=rnd.seed,
            arm="unused",  # an arm that has taken nothing: the whole pool, as round 1 saw it
            audit_fraction=cfg.selection.audit_fraction,
        )
    assert _items(project, round_id) <= {p.prompt_id for p in whole.picks}


@pytest.mark.postgres
def test_candidate_round_on_postgres(postgres_url, tiny_models):
    """The draw (streamed ids, bulk insert), the per-batch cost update and the restricted selection on
    PostgreSQL: 4 of 10 prompts drawn and scored, the items among them."""
    from loop.config import parse_config
    from storage.migrate import upgrade
    from storage.models import AnnotationItem, Prompt, RoundCandidate, RoundScoring
    from storage.upsert import upsert
    from tests.support.scoring_project import prompts

    cfg = parse_config(
        {
            "database": {"url": postgres_url},
            "policy": {"model": str(tiny_models.policy_dir), "dtype": "float32"},
            "generation": {"k": K, "max_new_tokens": 6, "batch_size": 3},
            "reward": {"model": str(tiny_models.reward_dir), "dtype": "float32"},
            "selection": {"candidates": 4, "budget": 2},
        },
        env={},
    )
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    uow = UnitOfWork(engine)
    with uow() as s:
        rows = [
            {"id": f"{i:064d}", "text": t, "source": "t", "split": "train"} for i, t in enumerate(prompts(10))
        ]
        upsert(s, Prompt, rows)
    start_round(uow, cfg)
    with uow() as s:
        round_id = round_by_number(s, 1).id
    assert step(uow, cfg, round_id, Services.default()) == RoundStatus.SCORED
    with uow() as s:
        candidates = set(s.scalars(select(RoundCandidate.prompt_id)))
        cost = s.get(RoundScoring, round_id)
        items = set(s.scalars(select(AnnotationItem.prompt_id)))
        assert (cost.candidates, cost.free_pool, cost.drawn, cost.prompts_scored) == (4, 10, 4, 4)
        assert cost.samples_generated == 4 * K
    assert len(candidates) == 4 and items and items <= candidates
    engine.dispose()
