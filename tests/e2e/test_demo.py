"""The README's main command end to end: `pvar-loop demo --quick` runs two scheduler-driven rounds through a
real local Argilla stack, and the report's claims match the database."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from storage.db import UnitOfWork, make_engine
from storage.models import AnnotationItem, Checkpoint, Evaluation, Label, Round

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.argilla
def test_quick_demo_runs_two_rounds_and_reports(tmp_path):
    data = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "loop.cli", "demo", "--quick", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "tiny random models show the mechanics" in r.stdout
    assert "Argilla UI: http://127.0.0.1:" in r.stdout

    uow = UnitOfWork(make_engine(f"sqlite:///{data / 'pvar-loop.db'}"))
    with uow() as s:
        done = s.scalars(select(Round).where(Round.status == "done").order_by(Round.number)).all()
        assert [x.number for x in done] == [1, 2]
        for rnd in done:
            items = s.scalar(select(func.count()).where(AnnotationItem.round_id == rnd.id))
            labels = s.scalar(
                select(func.count())
                .select_from(Label)
                .join(AnnotationItem)
                .where(AnnotationItem.round_id == rnd.id)
            )
            assert items == rnd.budget == 8 and labels == items  # one bot label per pushed item
        trained = s.scalars(select(Checkpoint).where(Checkpoint.round_id.is_not(None))).all()
        assert sorted(c.round_id for c in trained) == [x.id for x in done]
        assert done[1].policy_in == done[0].policy_out  # round 2 sampled from round 1's checkpoint
        evals = {e.checkpoint_id: e for e in s.scalars(select(Evaluation))}
        assert set(evals) == {c.id for c in trained}

    report = json.loads((data / "report" / "report.json").read_text())
    html = (data / "report" / "index.html").read_text()
    pngs = sorted((data / "report").glob("*.png"))
    assert [p.name for p in pngs] == [
        "annotator_reliability.png",  # the bots' position bias and agreement (issue 23)
        "budget_use.png",
        "eval_vs_labels.png",
        "label_agreement.png",
        "pvar_distribution.png",
    ] and all(p.read_bytes().startswith(PNG) for p in pngs)
    assert set(report["plots"].values()) == {p.name for p in pngs} and all(p.name in html for p in pngs)
    with uow() as s:
        assert report["total_labels"] == s.scalar(select(func.count()).select_from(Label))
    assert [(r["number"], r["status"], r["labels"]) for r in report["rounds"]] == [
        (1, "done", 8),
        (2, "done", 8),
    ]
    curve = {
        p["eval"]["checkpoint_id"]: p["eval"]["win_rate"] for p in report["curves"]["main"] if p.get("eval")
    }
    assert curve == {cid: e.win_rate for cid, e in evals.items()}

    # The audit slice: budget 8 at audit_fraction 0.1 -> 1 audit item per round (0.8 rounded half up); status
    # and the report give the same one-sentence answer.
    with uow() as s:
        assert s.scalar(select(func.count()).where(AnnotationItem.audit.is_(True))) == 2
    st = subprocess.run(
        [sys.executable, "-m", "loop.cli", "--config", str(data / "pvar-loop.toml"), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert st.returncode == 0, st.stderr[-3000:]
    sentence = json.loads(st.stdout)["audit"]["sentence"]
    assert sentence == report["audit"]["sentence"] and sentence in html
    assert sentence.startswith(("PVar items:", "Audit: cannot tell yet"))


@pytest.mark.slow
@pytest.mark.argilla
def test_quick_demo_on_vllm_samples_round_2_from_round_1s_checkpoint(tmp_path):
    """The same loop with `[generation] backend = "vllm"` (scoring and evaluation): the policy changes every
    round without a manual step, so round 2's stored samples are what round 1's checkpoint gives directly, and
    not what the base model gives."""
    from loop.config import load_config
    from loop.ml.generation import VllmGenerator
    from storage.models import Generation, Prompt
    from storage.types import storable_text

    data = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "loop.cli", "demo", "--quick", "--backend", "vllm", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cfg = load_config(data / "pvar-loop.toml")
    assert cfg.generation.backend == "vllm"
    uow = UnitOfWork(make_engine(f"sqlite:///{data / 'pvar-loop.db'}"))
    with uow() as s:
        done = s.scalars(select(Round).where(Round.status == "done").order_by(Round.number)).all()
        assert [x.number for x in done] == [1, 2] and done[1].policy_in == done[0].policy_out
        paths = {c.id: c.path for c in s.scalars(select(Checkpoint))}
        first = s.execute(
            select(Prompt.text, Generation.sample_index, Generation.text)
            .join(Generation, Generation.prompt_id == Prompt.id)
            .where(Generation.checkpoint_id == done[1].policy_in)
            .order_by(Prompt.id, Generation.sample_index)
        ).all()
        base_path = paths[done[0].policy_in]
    stored: dict[str, list[str]] = {}
    for text, _, sample in first:
        stored.setdefault(text, []).append(sample)
    prompts = sorted(stored)
    g = cfg.generation
    knobs = {"dtype": cfg.policy.dtype, "temperature": g.temperature, "top_p": g.top_p}
    knobs["max_new_tokens"] = g.max_new_tokens

    def draw(path: str) -> list[list[str]]:
        drawn = VllmGenerator(path, **knobs).generate(prompts, k=g.k, seed=g.seed)
        # Stored text went through the one cleaning rule for model output (NUL, lone surrogates).
        return [[storable_text(x.text) for x in per_prompt] for per_prompt in drawn]

    want = [stored[p] for p in prompts]
    assert draw(paths[done[1].policy_in]) == want
    assert draw(base_path) != want
