"""Replay mode on a small generated dataset in UltraFeedback's schema: ingest, lookup annotator, and the
"top X% by PVar vs full" arms."""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import func, select

from loop.experiment.replay import DATASET_CHECKPOINT, ingest_ultrafeedback_style, lookup_judge, run_replay
from loop.experiment.runner import ExperimentError
from storage.models import AnnotationItem, Generation, Label, Prompt, PromptScore, Round
from tests.integration.test_runner import tiny_config

TOPICS = [
    "rivers",
    "owls",
    "tea",
    "maps",
    "kites",
    "snow",
    "bread",
    "chess",
    "clocks",
    "glaciers",
    "trains",
    "gardens",
    "robots",
    "deserts",
    "music",
    "lighthouses",
]


def write_dataset(path, n=16):
    """UltraFeedback-like rows: 4 completions each, rated 1-10 (equal ratings on purpose, to make ties)."""
    rows = []
    for i, topic in enumerate(TOPICS[:n]):
        completions = []
        for j in range(4):
            text = f"Answer {j} about {topic}: " + " ".join(["detail"] * (j * 2 + i % 3))
            score = float(min(10, 2 + 2 * j)) if i % 4 else 5.0  # every 4th prompt: all completions tie
            completions.append(
                {
                    "model": f"m{j}",
                    "response": text,
                    "overall_score": score,
                    "annotations": {"helpfulness": {"Rating": str(j + 1), "Rationale": "r"}},
                }
            )
        rows.append({"source": "test", "instruction": f"Tell me about {topic}.", "completions": completions})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def replay_db(tmp_path, uow):
    data = write_dataset(tmp_path / "uf.jsonl")
    with uow() as s:
        report = ingest_ultrafeedback_style(s, data, eval_fraction=0.25)
    return uow, data, report


def test_ingest_keeps_prompts_completions_and_ratings(replay_db):
    uow, data, report = replay_db
    assert report.prompts + report.eval_prompts == 16 and report.eval_prompts > 0
    assert report.completions == 4 * report.prompts
    with uow() as s:
        again = ingest_ultrafeedback_style(s, data, eval_fraction=0.25)  # idempotent
        assert (again.prompts, again.completions) == (report.prompts, report.completions)
        assert s.scalar(select(func.count()).select_from(Generation)) == report.completions
        train = s.scalars(select(Prompt).where(Prompt.split == "train")).all()
        assert all(len(p.meta["ratings"]) == 4 for p in train)


def test_lookup_judge_answers_by_rating(replay_db):
    uow, _, _ = replay_db
    with uow() as s:
        judge = lookup_judge(s)
        p = s.scalars(select(Prompt).where(Prompt.split == "train")).first()
        gens = s.scalars(
            select(Generation).where(Generation.prompt_id == p.id).order_by(Generation.sample_index)
        ).all()
    r = p.meta["ratings"]
    for a in gens:
        for b in gens:
            if a.id != b.id:
                want = "a" if r[a.sample_index] > r[b.sample_index] else "b"
                want = "tie" if r[a.sample_index] == r[b.sample_index] else want
                assert judge(p.text, a.text, b.text) == want


def test_bad_rows_name_the_line_and_key(tmp_path, uow):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "completions": [{"response": "a"}, {"response": "b"}]}) + "\n")
    with (
        uow() as s,
        pytest.raises(ExperimentError, match=r"bad.jsonl:1: completions\[0\]: no rating 'overall_score'"),
    ):
        ingest_ultrafeedback_style(s, bad)
    with uow() as s:
        report = ingest_ultrafeedback_style(
            s, write_dataset(tmp_path / "aspect.jsonl", 4), rating="helpfulness"
        )
        assert report.completions == 16


@pytest.mark.slow
def test_top_fraction_by_pvar_and_full_arms_complete(tmp_path, replay_db, tiny_models):
    uow, _, report = replay_db
    cfg = tiny_config(tmp_path, tiny_models)
    out = tmp_path / "replay.json"
    results = run_replay(cfg, uow, top_fraction=0.25, out=out)
    assert set(results["arms"]) == {"replay-pvar-top25", "replay-full"}
    assert json.loads(out.read_text())["arms"].keys() == results["arms"].keys()
    with uow() as s:
        rounds = {r.arm: r for r in s.scalars(select(Round))}
        assert {a: r.status for a, r in rounds.items()} == {
            "replay-pvar-top25": "done",
            "replay-full": "done",
        }
        assert all(r.policy_in == DATASET_CHECKPOINT for r in rounds.values())
        scored = s.scalar(
            select(func.count()).where(
                PromptScore.checkpoint_id == DATASET_CHECKPOINT, PromptScore.metric == "pvar"
            )
        )
        assert scored == report.prompts  # the pool was scored over the dataset's completions, nothing sampled
        assert s.scalar(select(func.count()).select_from(Generation)) == report.completions

        def items(arm):
            return s.scalars(select(AnnotationItem).where(AnnotationItem.round_id == rounds[arm].id)).all()

        top, full = items("replay-pvar-top25"), items("replay-full")
        assert len(top) == math.ceil(0.25 * report.prompts) and len(full) == report.prompts
        # The top arm's prompts are the highest-PVar ones.
        pvar = dict(
            s.execute(
                select(PromptScore.prompt_id, PromptScore.value).where(
                    PromptScore.checkpoint_id == DATASET_CHECKPOINT, PromptScore.metric == "pvar"
                )
            ).all()
        )
        assert min(pvar[i.prompt_id] for i in top) >= sorted(pvar.values(), reverse=True)[len(top) - 1]
        # Every label is what the ratings say about the pair, in our orientation.
        labels = s.execute(select(Label.choice, AnnotationItem).join(AnnotationItem)).all()
        assert len(labels) == len(top) + len(full)
        for choice, item in labels:
            ga, gb = s.get(Generation, item.generation_a_id), s.get(Generation, item.generation_b_id)
            ratings = s.get(Prompt, item.prompt_id).meta["ratings"]
            ra, rb = ratings[ga.sample_index], ratings[gb.sample_index]
            assert choice == ("a" if ra > rb else "b" if ra < rb else "tie")
    for arm in results["arms"].values():
        (row,) = arm["rounds"]
        assert row["labels"] == row["decided_ab"] + row["ties"]
        if row["decided_ab"]:
            assert row["evaluation"]["judge"].startswith("reward:")


def _toml_config(root, tiny_models, db_url):
    path = root / "pvar-loop.toml"
    path.write_text(f"""
[paths]
data_dir = "{root / "data"}"
[database]
url = "{db_url}"
[policy]
model = "{tiny_models.policy_dir}"
dtype = "float32"
[generation]
k = 3
max_new_tokens = 8
[reward]
model = "{tiny_models.reward_dir}"
dtype = "float32"
max_length = 128
[training]
learning_rate = 5e-5
batch_size = 2
max_length = 128
lora = false
dtype = "float32"
[evaluation]
judge = "reward"  # the default is a human judge; an experiment needs a model
max_new_tokens = 8
n_bootstrap = 200
""")
    return path


def test_cli_rejects_unknown_arms_and_needs_constraints(tmp_path, engine, sqlite_url, tiny_models, capsys):
    from loop.cli.app import main

    config = _toml_config(tmp_path, tiny_models, sqlite_url)
    assert main(["--config", str(config), "experiment", "--arms", "pvar,nope"]) == 2
    assert "unknown arm(s) nope" in capsys.readouterr().err
    assert main(["--config", str(config), "experiment", "--arms", "pvar-matched"]) == 2
    assert "match_steps_to='random-s0'" in capsys.readouterr().err
    assert main(["--config", str(config), "experiment", "--arms", "pvar"]) == 2  # empty pool: no constraints
    assert "metadata.constraints" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_replay_prints_a_table_and_writes_results(tmp_path, engine, sqlite_url, tiny_models, capsys):
    from loop.cli.app import main

    config = _toml_config(tmp_path, tiny_models, sqlite_url)
    data = write_dataset(tmp_path / "uf.jsonl")
    out = tmp_path / "res.json"
    args = ["--config", str(config), "experiment", "--replay", str(data), "--top-fraction", "0.25"]
    assert main([*args, "--eval-fraction", "0.25", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    for arm, body in results["arms"].items():
        assert body["rounds"][0]["status"] == "done"
        assert f"{arm} round 1: done" in printed
    assert "win rate [95% CI]" in printed and str(out.resolve()) in printed
