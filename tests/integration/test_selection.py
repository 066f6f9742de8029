"""`pvar-loop select` over a pool scored with tiny real models: ranking, open-round exclusion, budget
messages; and the repository pieces selection rests on (SQLite, and PostgreSQL for the dialect paths)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from sqlalchemy import select, update

from loop.config import load_config, parse_config
from loop.rounds.selection import SelectionError, choose
from loop.scoring.pool import score_with_config
from storage.db import UnitOfWork, make_engine, select_in
from storage.migrate import upgrade
from storage.models import AnnotationItem, Generation, Label, Prompt, Round
from storage.repositories.candidates import record_candidates
from storage.repositories.checkpoints import initial_checkpoint_id
from storage.repositories.prompts import prompt_texts
from storage.upsert import upsert
from tests.support.scoring_project import make_project, prompts

N_PROMPTS = 10
PICK_KEYS = {"rank", "prompt_id", "pvar", "reward_gap", "text", "audit", "source_id"}


@pytest.fixture(scope="module")
def scored_template(tmp_path_factory, tiny_models):
    """A project whose 10 prompts are scored once; tests work on copies of its database."""
    root = tmp_path_factory.mktemp("scored")
    project = make_project(root, tiny_models.policy_dir, tiny_models.reward_dir, N_PROMPTS, k=3, batch_size=5)
    assert project.cli("score", "--no-progress") == 0
    with sqlite3.connect(project.db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return project


@pytest.fixture
def project(scored_template, tmp_path, monkeypatch):
    """The scored project on a private copy of its database (PVAR_LOOP_DATABASE_URL points at it)."""
    db = tmp_path / "copy.db"
    shutil.copy(scored_template.db, db)
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", f"sqlite:///{db}")
    return type(scored_template)(scored_template.root, scored_template.config, db)


def _select(project, capsys, *args: str) -> dict:
    capsys.readouterr()
    assert project.cli("select", "--json", *args) == 0
    return json.loads(capsys.readouterr().out)


def _uow(project) -> UnitOfWork:
    return UnitOfWork(make_engine(f"sqlite:///{project.db}"))


def _open_round(uow: UnitOfWork, prompt_ids: list[str], status: str = "collecting") -> int:
    """A round holding items for prompt_ids (what the round runner writes when it pushes a round)."""
    with uow() as s:
        rnd = Round(number=1, status=status, budget=len(prompt_ids), strategy="pvar")
        s.add(rnd)
        s.flush()
        for p in prompt_ids:
            a, b = s.scalars(select(Generation.id).where(Generation.prompt_id == p).limit(2)).all()
            s.add(
                AnnotationItem(
                    id=f"{rnd.id}-{p}"[:64],
                    round_id=rnd.id,
                    prompt_id=p,
                    generation_a_id=a,
                    generation_b_id=b,
                )
            )
        return rnd.id


def test_json_shape_and_pvar_ranking(project, capsys):
    out = _select(project, capsys, "--strategy", "pvar", "--budget", "3")
    assert set(out) == {
        "strategy",
        "budget",
        "seed",
        "checkpoint",
        "reward_model",
        "pool",
        "taken",
        "unscored",
        "shortfall",
        "audit_fraction",
        "audits",
        "selected",
        "among_round",
    }
    scored = dict(project.query("SELECT prompt_id, value FROM prompt_scores WHERE metric = 'pvar'"))
    assert (out["strategy"], out["budget"], out["pool"], out["taken"]) == ("pvar", 3, len(scored), 0)
    assert out["unscored"] == 0 and out["shortfall"] == 0
    picks = out["selected"]
    assert [p["rank"] for p in picks] == [1, 2, 3] and all(set(p) == PICK_KEYS for p in picks)
    assert [p["pvar"] for p in picks] == sorted(scored.values(), reverse=True)[:3]
    assert all(p["pvar"] == scored[p["prompt_id"]] and p["text"] in prompts(N_PROMPTS) for p in picks)
    gaps = dict(project.query("SELECT prompt_id, value FROM prompt_scores WHERE metric = 'reward_gap'"))
    top_gap = _select(project, capsys, "--strategy", "reward-gap", "--budget", "2")["selected"]
    assert [p["reward_gap"] for p in top_gap] == sorted(gaps.values(), reverse=True)[:2]


def test_select_shows_the_operators_own_prompt_ids(project, capsys):
    """The source id ingest stored (the row's 'id') is shown next to the hash, in the table and the JSON."""
    uow = _uow(project)
    with uow() as s:
        prompts_ = s.scalars(select(Prompt).order_by(Prompt.id)).all()
        for i, p in enumerate(prompts_):
            p.source_id = None if i == 0 else f"ticket-{i:03d}"
        sources = {p.id: p.source_id for p in prompts_}
    picks = _select(project, capsys, "--strategy", "full")["selected"]
    assert {p["prompt_id"]: p["source_id"] for p in picks} == sources
    capsys.readouterr()
    assert project.cli("select", "--strategy", "full") == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("rank"))
    assert header.index("source id") < header.index("prompt id")
    for p in picks:
        row = next(line for line in lines if p["prompt_id"][:12] in line)
        assert (p["source_id"] or "-") in row.split()


def test_open_round_excludes_its_prompts_and_cancel_frees_them(project, capsys):
    uow = _uow(project)
    everything = {p["prompt_id"] for p in _select(project, capsys, "--strategy", "full")["selected"]}
    held = sorted(everything)[:3]
    round_id = _open_round(uow, held)

    out = _select(project, capsys, "--strategy", "full")
    chosen = {p["prompt_id"] for p in out["selected"]}
    assert chosen == everything - set(held) and (out["pool"], out["taken"]) == (len(everything) - 3, 3)

    with uow() as s:
        s.execute(update(Round).where(Round.id == round_id).values(status="cancelled", reason="operator"))
    out = _select(project, capsys, "--strategy", "full")
    assert {p["prompt_id"] for p in out["selected"]} == everything and out["taken"] == 0

    # A prompt somebody already labelled stays out even though its round was cancelled.
    with uow() as s:
        item = s.scalars(select(AnnotationItem).where(AnnotationItem.prompt_id == held[0])).one()
        s.add(Label(item_id=item.id, annotator="ann-1", choice="a"))
    out = _select(project, capsys, "--strategy", "full")
    assert {p["prompt_id"] for p in out["selected"]} == everything - {held[0]} and out["taken"] == 1


def test_select_previews_the_open_rounds_draw(project, capsys):
    """A round that drew its candidates ([selection] candidates) but has not picked yet picks among those
    only, so `select` previews exactly that; before, it ranked the whole pool and showed prompts the round
    could never pick."""
    everything = {p["prompt_id"] for p in _select(project, capsys, "--strategy", "full")["selected"]}
    drawn = sorted(everything)[::3]
    uow = _uow(project)
    with uow() as s:
        rnd = Round(number=1, status="scored", budget=2, strategy="pvar")
        s.add(rnd)
        s.flush()
        record_candidates(s, rnd.id, asked=len(drawn), free_pool=len(everything), prompt_ids=drawn)
        round_id = rnd.id
    out = _select(project, capsys, "--strategy", "full")
    assert {p["prompt_id"] for p in out["selected"]} == set(drawn) and out["among_round"] == round_id
    top = _select(project, capsys, "--strategy", "pvar", "--budget", "2")["selected"]
    assert {p["prompt_id"] for p in top} <= set(drawn) and len(top) == 2
    assert project.cli("select", "--strategy", "pvar", "--budget", "2") == 0
    assert f"open round (id {round_id}) drew" in capsys.readouterr().out


def test_select_says_a_round_would_rank_a_random_draw(project, capsys, tmp_path):
    """With no open round and [selection] candidates below the pool, the preview says it ranks the whole pool
    while a round picks among a random draw of that many."""
    from loop.cli.app import main

    config = tmp_path / "candidates.toml"
    config.write_text(project.config.read_text(encoding="utf-8") + "[selection]\ncandidates = 4\n")
    capsys.readouterr()
    assert main(["--config", str(config), "select", "--strategy", "pvar", "--budget", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        "[selection] candidates = 4 of the free prompts at random" in out and f"ranks all {N_PROMPTS}" in out
    )


def test_budget_larger_than_pool_is_reported(project, capsys):
    capsys.readouterr()
    assert project.cli("select", "--strategy", "pvar", "--budget", "50") == 0
    text = capsys.readouterr().out
    pool = project.count("SELECT COUNT(*) FROM prompt_scores WHERE metric = 'pvar'")
    assert f"the budget 50 is larger than the pool of {pool} free scored prompts" in text
    assert f"all {pool} would be selected ({50 - pool} short)" in text
    out = _select(project, capsys, "--strategy", "low-pvar", "--budget", "50")
    assert out["shortfall"] == 50 - pool and len(out["selected"]) == pool
    assert [p["pvar"] for p in out["selected"]] == sorted(p["pvar"] for p in out["selected"])


def test_random_arm_is_reproducible_under_a_seed(project, capsys):
    def pick(seed: int) -> list[str]:
        return [
            p["prompt_id"]
            for p in _select(project, capsys, "--strategy", "random", "--budget", "4", "--seed", str(seed))[
                "selected"
            ]
        ]

    assert pick(7) == pick(7)
    assert len({tuple(pick(s)) for s in range(5)}) > 1


def test_pvar_budget_keeps_an_audit_slice_drawn_outside_the_top(project, capsys, tmp_path):
    """Budget 5 at the default audit_fraction 0.1: 0.5 rounds half up to 1 audit pick, drawn at random
    (seeded) from the prompts the top-4 PVar slice left; other strategies have no audit slice."""
    scored = dict(project.query("SELECT prompt_id, value FROM prompt_scores WHERE metric = 'pvar'"))
    by_pvar = sorted(scored, key=scored.get, reverse=True)
    drawn = set()
    for seed in range(6):
        out = _select(project, capsys, "--strategy", "pvar", "--budget", "5", "--seed", str(seed))
        picks = out["selected"]
        assert (out["audit_fraction"], out["audits"], len(picks)) == (0.1, 1, 5)
        assert [p["audit"] for p in picks] == [False] * 4 + [True]
        top = [p["prompt_id"] for p in picks[:4]]
        assert sorted(scored[p] for p in top) == sorted(scored[p] for p in by_pvar[:4])
        assert picks[4]["prompt_id"] not in top and picks[4]["rank"] == 5
        drawn.add(picks[4]["prompt_id"])
        again = _select(project, capsys, "--strategy", "pvar", "--budget", "5", "--seed", str(seed))
        assert again["selected"] == picks
    assert len(drawn) > 1  # the seed moves the draw
    out = _select(project, capsys, "--strategy", "reward-gap", "--budget", "5")
    assert out["audits"] == 0 and not any(p["audit"] for p in out["selected"])

    capsys.readouterr()
    assert project.cli("select", "--strategy", "pvar", "--budget", "5") == 0
    text = capsys.readouterr().out
    assert "1 of them (marked 'audit') drawn at random" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:4] == ["rank", "pvar", "gap", "pick"])
    rows = [line.split() for line in lines[header + 1 :]]
    assert [r[3] for r in rows] == ["top"] * 4 + ["audit"]

    off = tmp_path / "no-audit.toml"  # the template's config is shared: change a copy
    off.write_text(project.config.read_text() + "\n[selection]\naudit_fraction = 0.0\n", encoding="utf-8")
    out = _select(type(project)(project.root, off, project.db), capsys, "--strategy", "pvar", "--budget", "5")
    assert out["audits"] == 0 and [p["pvar"] for p in out["selected"]] == [scored[p] for p in by_pvar[:5]]


def test_planned_round_records_its_audit_items(project):
    """The round runner's planning writes the audit flag on the items: 1 of a budget of 5 (pvar), the very
    prompt `select` shows as audit for the round's seed."""
    from loop.rounds.state import _plan_items
    from loop.scoring.pool import reward_model_id

    cfg = load_config(project.config, env={"PVAR_LOOP_DATABASE_URL": f"sqlite:///{project.db}"})
    checkpoint = initial_checkpoint_id(cfg.policy.model)
    uow = _uow(project)
    with uow() as s:
        shown = choose(
            s,
            checkpoint_id=checkpoint,
            reward_model=reward_model_id(cfg),
            strategy="pvar",
            budget=5,
            seed=3,
            audit_fraction=cfg.selection.audit_fraction,
        )
    with uow() as s:
        rnd = Round(number=1, budget=5, strategy="pvar", seed=3, policy_in=checkpoint)
        s.add(rnd)
        s.flush()
        written = _plan_items(s, cfg, rnd)
    rows = dict(project.query("SELECT prompt_id, audit FROM annotation_items"))
    assert written == len(rows) == 5 and sum(rows.values()) == 1
    assert {p for p, a in rows.items() if a} == {p.prompt_id for p in shown.picks if p.audit}

    # An experiment arm's pvar round stays pure pvar: the arms are the comparison there.
    with uow() as s:
        rnd = Round(number=1, arm="exp-pvar", budget=5, strategy="pvar", seed=3, policy_in=checkpoint)
        s.add(rnd)
        s.flush()
        assert _plan_items(s, cfg, rnd) == 5
        arm_id = rnd.id
    assert project.count("SELECT COUNT(*) FROM annotation_items WHERE round_id = ? AND audit", arm_id) == 0


def test_select_errors_exit_2_without_traceback(tmp_path, tiny_models, capsys):
    fresh = make_project(tmp_path, tiny_models.policy_dir, tiny_models.reward_dir, 3)
    capsys.readouterr()
    assert fresh.cli("select", "--budget", "2") == 2
    err = capsys.readouterr().err
    assert "no PVar scores for checkpoint" in err and "run `pvar-loop score` first" in err
    assert "Traceback" not in err
    for bad in (["--budget", "-1"], ["--budget", "two"], ["--strategy", "best"]):
        with pytest.raises(SystemExit) as exc:
            fresh.cli("select", *bad)
        assert exc.value.code == 2
    assert fresh.cli("score", "--checkpoint", "no-such-checkpoint") == 2
    assert "checkpoint 'no-such-checkpoint' is not in the database" in capsys.readouterr().err


def test_select_offers_the_strategies_strategy_set_accepts(capsys):
    """`select --strategy` takes the production strategies `strategy set` and config take; the experiment-only
    arm is refused at parse time (exit 2), as `strategy set` refuses it, instead of ranking like plain random."""
    from loop.acquisition.strategies import PRODUCTION_STRATEGIES
    from loop.cli.app import build_parser

    parser = build_parser()
    for name in PRODUCTION_STRATEGIES:
        assert parser.parse_args(["select", "--strategy", name]).strategy == name
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["select", "--strategy", "random-disagree"])
    assert exc.value.code == 2
    assert "invalid choice: 'random-disagree'" in capsys.readouterr().err


def test_select_in_chunks_and_deduplicates(uow):
    ids = [f"{i:064d}" for i in range(23)]
    with uow() as s:
        upsert(s, Prompt, [{"id": i, "text": f"t{i}", "source": "test", "split": "train"} for i in ids])
    with uow() as s:
        rows = select_in(s, lambda chunk: select(Prompt.id).where(Prompt.id.in_(chunk)), ids + ids, chunk=4)
        texts = prompt_texts(s, ids[::-1])
    assert sorted(r[0] for r in rows) == ids
    assert texts == {i: f"t{i}" for i in ids}


def test_initial_checkpoint_id_is_stable(tmp_path, monkeypatch):
    model = tmp_path / "models" / "policy"
    model.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert initial_checkpoint_id("models/policy") == initial_checkpoint_id(str(model))
    hub = initial_checkpoint_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert hub.startswith("init-SmolLM2-135M-Instruct-") and len(hub) <= 200
    assert hub != initial_checkpoint_id("other/SmolLM2-135M-Instruct")


@pytest.mark.postgres
def test_score_and_select_on_postgres(postgres_url, tiny_models):
    cfg = parse_config(
        {
            "database": {"url": postgres_url},
            "policy": {"model": str(tiny_models.policy_dir), "dtype": "float32"},
            "generation": {"k": 3, "max_new_tokens": 6, "batch_size": 3},
            "reward": {"model": str(tiny_models.reward_dir), "dtype": "float32"},
        },
        env={},
    )
    engine = make_engine(cfg.database_url)
    upgrade(engine)
    uow = UnitOfWork(engine)
    with uow() as s:
        upsert(
            s,
            Prompt,
            [
                {"id": f"{i:064d}", "text": t, "source": "t", "split": "train"}
                for i, t in enumerate(prompts(5))
            ],
        )
    first = score_with_config(cfg, uow, limit=3, progress=False)
    rest = score_with_config(cfg, uow, progress=False)
    assert first.prompts_done == 3 and rest.prompts_done == 2 and rest.remaining == 0
    with uow() as s:
        checkpoint = initial_checkpoint_id(cfg.policy.model)
        full = choose(
            s, checkpoint_id=checkpoint, reward_model=cfg.reward.model, strategy="full", budget=0, seed=0
        )
        scored = [p.prompt_id for p in full.picks]
    assert len(scored) == first.scored + rest.scored >= 2
    _open_round(uow, scored[:1])
    with uow() as s:
        sel = choose(
            s, checkpoint_id=checkpoint, reward_model=cfg.reward.model, strategy="pvar", budget=9, seed=0
        )
        with pytest.raises(SelectionError, match="no PVar scores"):
            choose(s, checkpoint_id="other", reward_model=cfg.reward.model, strategy="pvar", budget=1, seed=0)
    assert [p.prompt_id for p in sel.picks if p.prompt_id == scored[0]] == [] and sel.taken == 1
    engine.dispose()


def test_status_and_report_compare_pvar_with_audit_items(project, capsys, tmp_path):
    """A planned round's outcomes written through the repositories: status (text and --json) and the report
    give the same sentence; the numbers are those of the items in the database."""
    from loop.evaluation.audit import newcombe
    from loop.rounds.state import _plan_items
    from storage.repositories.items import set_outcomes
    from storage.statuses import ItemStatus

    capsys.readouterr()
    assert project.cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["audit"]["sentence"] == (
        "Audit: cannot tell yet whether PVar items carry more signal than random ones: no audit item has an "
        "outcome yet."
    )
    cfg = load_config(project.config, env={"PVAR_LOOP_DATABASE_URL": f"sqlite:///{project.db}"})
    uow = _uow(project)
    with uow() as s:
        rnd = Round(
            number=1, budget=5, strategy="pvar", seed=3, policy_in=initial_checkpoint_id(cfg.policy.model)
        )
        s.add(rnd)
        s.flush()
        _plan_items(s, cfg, rnd)
        items = s.scalars(select(AnnotationItem)).all()
        outcomes = [
            (i.id, ItemStatus.UNDECIDED, None, {"a": 1, "b": 1})
            if i.audit
            else (i.id, ItemStatus.DECIDED, "a", {"a": 2})
            for i in items
        ]
        assert set_outcomes(s, outcomes) == 5
    lo, hi = newcombe(4, 4, 0, 1)
    expected = (
        f"PVar items: 100% decided vs 0% for audit items, +100 pts [{100 * lo:+.0f}, {100 * hi:+.0f}] "
        "over 1 round"
    )

    assert project.cli("status", "--json") == 0
    audit = json.loads(capsys.readouterr().out)["audit"]
    assert audit["sentence"].startswith(expected)
    cum = audit["cumulative"]
    assert (cum["pvar"]["decided"]["x"], cum["pvar"]["decided"]["n"]) == (4, 4)
    assert (cum["audit"]["decided"]["x"], cum["audit"]["decided"]["n"]) == (0, 1)
    assert (cum["pvar"]["rm_agreement"]["x"], cum["pvar"]["rm_agreement"]["n"]) == (4, 4)
    assert (cum["audit"]["annotator_agreement"]["x"], cum["audit"]["annotator_agreement"]["n"]) == (0, 1)
    assert [r["round"] for r in audit["rounds"]] == [1]
    assert project.cli("status") == 0
    assert audit["sentence"] in capsys.readouterr().out

    out = tmp_path / "report"
    assert project.cli("report", "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["audit"]["sentence"] == audit["sentence"]
    assert audit["sentence"] in (out / "index.html").read_text()
