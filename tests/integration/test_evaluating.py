"""Evaluation evidence in the database: every sampled response is a row, the reference is sampled and judged
once for every checkpoint evaluated the same way, and the stored means are the rows' means."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import func, select

from loop.config import parse_config
from loop.rounds.evaluating import evaluate_checkpoint
from storage.models import Checkpoint, Evaluation, EvaluationSample, Prompt
from storage.repositories.evaluations import (
    cached_reference,
    delete_evaluations,
    evaluation_samples,
    per_prompt_means,
)

N_PROMPTS, SAMPLES = 3, 2


@pytest.fixture
def project(uow, tiny_models, tmp_path):
    cfg = parse_config(
        {
            "paths": {"data_dir": str(tmp_path / "data")},
            "policy": {"model": str(tiny_models.policy_dir), "dtype": "float32"},
            "reward": {"model": str(tiny_models.reward_dir), "dtype": "float32", "max_length": 64},
            "generation": {"max_new_tokens": 6, "batch_size": 8, "temperature": 1.0, "top_p": 1.0},
            "evaluation": {
                "judge": "reward",
                "max_new_tokens": 6,
                "n_bootstrap": 200,
                "samples_per_prompt": SAMPLES,
            },
        },
        env={},
    )
    with uow() as s:
        s.add_all(
            Prompt(id=f"eval{i}", text=f"Eval question {i}?", source="t", split="eval", meta={})
            for i in range(N_PROMPTS)
        )
        # Two "trained" checkpoints: copies of the initial weights under their own ids and paths.
        for name in ("ckpt-a", "ckpt-b"):
            path = shutil.copytree(tiny_models.policy_dir, tmp_path / name)
            s.add(Checkpoint(id=name, path=str(path), round_id=None, label_count=8))
    return cfg


def _rows(uow, evaluation_id, side=None):
    with uow() as s:
        stmt = select(EvaluationSample).where(EvaluationSample.evaluation_id == evaluation_id)
        if side:
            stmt = stmt.where(EvaluationSample.side == side)
        return list(s.scalars(stmt))


def _mean(rows):
    return sum(r.score for r in rows) / len(rows)


def test_two_checkpoints_share_one_reference_draw(uow, project, monkeypatch):
    import loop.ml.generation as generation

    loaded = []
    real = generation.make_generator
    monkeypatch.setattr(
        generation, "make_generator", lambda *a, **k: loaded.append(k["model"]) or real(*a, **k)
    )
    first = evaluate_checkpoint(project, uow, "ckpt-a")
    assert len(loaded) == 2  # the policy and the reference
    second = evaluate_checkpoint(project, uow, "ckpt-b")
    assert len(loaded) == 3  # the policy only: the reference was not sampled again

    per_side = N_PROMPTS * SAMPLES
    assert len(_rows(uow, first.id, "policy")) == len(_rows(uow, first.id, "reference")) == per_side
    assert len(_rows(uow, second.id, "policy")) == per_side
    assert _rows(uow, second.id, "reference") == []  # no new reference rows
    with uow() as s:
        assert s.scalar(select(func.count()).select_from(EvaluationSample)) == 3 * per_side
        a, b = s.get(Evaluation, first.id), s.get(Evaluation, second.id)
        assert (a.reference_samples_id, b.reference_samples_id) == (None, first.id)
        assert a.reference_key == b.reference_key

        for ev in (a, b):
            policy = [r for r in evaluation_samples(s, ev.id) if r.side == "policy"]
            reference = [r for r in evaluation_samples(s, ev.id) if r.side == "reference"]
            assert len(policy) == len(reference) == per_side
            assert all(r.evaluation_id == first.id for r in reference)
            # The stored means are the means of the rows; per_prompt_means matches the rows.
            assert ev.details["policy_mean"] == pytest.approx(_mean(policy))
            assert ev.details["reference_mean"] == pytest.approx(_mean(reference))
            assert ev.details["policy_ci_low"] <= ev.details["policy_mean"] <= ev.details["policy_ci_high"]
            assert ev.details["samples_per_prompt"] == SAMPLES and ev.n_prompts == N_PROMPTS
            for side, rows in (("policy", policy), ("reference", reference)):
                means = per_prompt_means(s, ev.id, side=side)
                assert set(means) == {f"eval{i}" for i in range(N_PROMPTS)}
                for pid, mean in means.items():
                    assert mean == pytest.approx(_mean([r for r in rows if r.prompt_id == pid]))
            assert {r.sample_index for r in policy} == set(range(SAMPLES))
            assert all(r.n_tokens >= 0 and isinstance(r.text, str) for r in policy)

        # Common random numbers: both checkpoints drew sample i of each prompt with the same seed, and, having
        # the same weights, drew the same responses; the reference drew with other seeds.
        key = lambda r: (r.prompt_id, r.sample_index)  # noqa: E731
        pol_a = sorted(_rows(uow, first.id, "policy"), key=key)
        pol_b = sorted(_rows(uow, second.id, "policy"), key=key)
        assert [(r.seed, r.text) for r in pol_a] == [(r.seed, r.text) for r in pol_b]
        ref_seeds = {r.seed for r in _rows(uow, first.id, "reference")}
        assert len(ref_seeds) == SAMPLES and not ref_seeds & {r.seed for r in pol_a}

    # Deleting the evaluation that owns the reference rows hands them to the one reusing them.
    with uow() as s:
        delete_evaluations(s, [first.id])
    with uow() as s:
        assert s.get(Evaluation, first.id) is None
        assert s.get(Evaluation, second.id).reference_samples_id is None
        assert len(per_prompt_means(s, second.id, side="reference")) == N_PROMPTS
        owner, rows = cached_reference(s, b.reference_key)
        assert owner == second.id and len(rows) == per_side
    assert len(_rows(uow, second.id, "reference")) == per_side


def test_other_sampling_settings_sample_the_reference_again(uow, project):
    first = evaluate_checkpoint(project, uow, "ckpt-a")
    more = project.model_copy(
        update={"evaluation": project.evaluation.model_copy(update={"samples_per_prompt": 1})}
    )
    second = evaluate_checkpoint(more, uow, "ckpt-b")
    assert second.reference_key != first.reference_key and second.reference_samples_id is None
    assert len(_rows(uow, second.id, "reference")) == N_PROMPTS
    with uow() as s:
        # sample 0 of the reference has one seed whatever the number of samples: the same draw
        one = {r.prompt_id: r.text for r in _rows(uow, second.id, "reference")}
        two = {r.prompt_id: r.text for r in _rows(uow, first.id, "reference") if r.sample_index == 0}
        assert one == two
        assert s.get(Evaluation, second.id).details["samples_per_prompt"] == 1


def test_samples_repository_refuses_unknown_sides_and_evaluations(uow):
    from storage.errors import PvarLoopError
    from storage.repositories.evaluations import EvaluationSamplesError, add_samples

    with uow() as s:
        s.add_all(
            [Checkpoint(id="c", path="/c"), Prompt(id="q", text="Q?", source="t", split="eval", meta={})]
        )
        s.flush()
        ev = Evaluation(
            checkpoint_id="c", reference_id="c", judge="j", n_prompts=1, win_rate=0.5, ci_low=0.5, ci_high=0.5
        )
        s.add(ev)
        s.flush()
        row = {"prompt_id": "q", "sample_index": 0, "seed": 7, "text": "a", "n_tokens": 1, "score": 0.25}
        assert add_samples(s, ev.id, [{**row, "side": "policy"}, {**row, "side": "reference"}]) == 2
        assert per_prompt_means(s, ev.id) == {"q": 0.25} == per_prompt_means(s, ev.id, side="reference")
        with pytest.raises(EvaluationSamplesError, match="side must be one of") as info:
            add_samples(s, ev.id, [{**row, "side": "judge"}])
        assert isinstance(info.value, PvarLoopError)
        with pytest.raises(EvaluationSamplesError, match="no evaluation 999"):
            per_prompt_means(s, 999)
        assert [r.side for r in evaluation_samples(s, ev.id)] == ["policy", "reference"]
