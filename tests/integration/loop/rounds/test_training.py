"""Retraining wired to the database: checkpoints registered once, refusals that write nothing, evaluation
stored per checkpoint, and the TRL export loadable by `datasets`."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from loop.config import parse_config
from loop.export import export_preferences
from loop.rounds.evaluating import evaluate_checkpoint
from loop.rounds.training import TrainingDataError, train_round
from storage.models import AnnotationItem, Checkpoint, DpoMargin, Evaluation, Prompt, Round, TrainingRun
from tests.support.annotation_setup import CHECKPOINT, make_round_items


@pytest.fixture
def cfg(tiny_models, tmp_path):
    return parse_config(
        {
            "paths": {"data_dir": str(tmp_path / "data")},
            "policy": {"model": str(tiny_models.policy_dir), "dtype": "float32"},
            "reward": {"model": str(tiny_models.reward_dir), "dtype": "float32", "max_length": 128},
            "generation": {"k": 2, "max_new_tokens": 8, "batch_size": 8},
            "training": {"learning_rate": 5e-5, "dtype": "float32", "lora": False, "batch_size": 4},
            "evaluation": {"judge": "reward", "max_new_tokens": 8, "n_bootstrap": 200},
        },
        env={},
    )


def _round(uow, tiny_models, n=8, decided=True):
    items = make_round_items(uow, n)
    with uow() as s:
        s.get(Checkpoint, CHECKPOINT).path = str(tiny_models.policy_dir)
        s.get(Round, items.round_id).status = "training" if decided else "collecting"
        for i, item in enumerate(s.scalars(select(AnnotationItem))):
            if decided or i % 2:
                item.status, item.decision = "decided", "a" if i % 3 else "b"
        s.add_all(
            Prompt(id=f"eval{i}", text=f"Eval question {i}?", source="t", split="eval", meta={})
            for i in range(4)
        )
    return items


def _count(uow, model):
    with uow() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_train_registers_checkpoint_once_and_evaluates(uow, cfg, tiny_models):
    items = _round(uow, tiny_models)
    checkpoint = train_round(cfg, uow, items.round_id)
    with uow() as s:
        ckpt = s.get(Checkpoint, checkpoint)
        assert ckpt.round_id == items.round_id and ckpt.label_count == 8 and ckpt.base_id == CHECKPOINT
        run = s.scalar(select(TrainingRun))
        assert run.status == "done" and run.metrics["steps"] >= 2
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(ckpt.path)
    assert train_round(cfg, uow, items.round_id) == checkpoint  # same round, same data: no-op
    assert _count(uow, TrainingRun) == 1

    ev = evaluate_checkpoint(cfg, uow, checkpoint)
    assert ev.n_prompts == 4 and 0.0 <= ev.ci_low <= ev.win_rate <= ev.ci_high <= 1.0
    assert ev.judge == f"reward:{tiny_models.reward_dir}"
    evaluate_checkpoint(cfg, uow, checkpoint)
    assert _count(uow, Evaluation) == 1


def test_refuses_open_round_with_undecided_items(uow, cfg, tiny_models):
    items = _round(uow, tiny_models, decided=False)
    with pytest.raises(TrainingDataError, match=r"still collecting: 4 of its items have no decided label"):
        train_round(cfg, uow, items.round_id)
    assert _count(uow, TrainingRun) == 0 and not (cfg.paths.data_dir / "checkpoints").exists()


def test_refuses_empty_label_set(uow, cfg, tiny_models):
    items = make_round_items(uow, 3)
    with uow() as s:
        s.get(Round, items.round_id).status = "training"
    with pytest.raises(TrainingDataError, match="no decided a/b labels"):
        train_round(cfg, uow, items.round_id)
    assert _count(uow, Checkpoint) == 1 and _count(uow, TrainingRun) == 0


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_export_loads_with_datasets(uow, tiny_models, tmp_path, suffix):
    _round(uow, tiny_models)
    out = tmp_path / f"prefs{suffix}"
    with uow() as s:
        assert export_preferences(s, out) == 8
    import datasets

    builder = "json" if suffix == ".jsonl" else "parquet"
    ds = datasets.load_dataset(builder, data_files=str(out), split="train")
    assert ds.num_rows == 8 and ds[0]["chosen"][0]["role"] == "assistant"


def test_margins_recorded_for_audit_rounds_and_compared_per_group(uow, cfg, tiny_models):
    """A round with audit items: after DPO every decided a/b item has its implicit reward margin under the new
    checkpoint, equal to beta * the policy-vs-initial log-ratio of chosen minus rejected; the audit summary
    compares the groups. A round without audit items spends no forward passes on margins."""
    import numpy as np

    from loop.evaluation.audit import audit_summary
    from loop.ml.logprobs import completion_logprobs
    from storage.repositories.items import audit_outcomes, decided_items

    items = _round(uow, tiny_models)
    with uow() as s:
        for i, item in enumerate(s.scalars(select(AnnotationItem).order_by(AnnotationItem.id))):
            item.audit = i % 4 == 0
            if i == 1:
                item.decision = "tie"  # not trained on: no margin
    checkpoint = train_round(cfg, uow, items.round_id)
    with uow() as s:
        margins = {m.item_id: m.margin for m in s.scalars(select(DpoMargin))}
        pairs = decided_items(s, [items.round_id])
        policy = s.get(Checkpoint, checkpoint).path
        assert {m.checkpoint_id for m in s.scalars(select(DpoMargin))} == {checkpoint}
    assert set(margins) == {p.item_id for p in pairs} and len(margins) == 7
    prompts, texts = [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]
    ratio = completion_logprobs(policy, prompts, texts) - completion_logprobs(
        tiny_models.policy_dir, prompts, texts
    )
    expected = cfg.training.beta * (ratio[:7] - ratio[7:])
    assert np.allclose([margins[p.item_id] for p in pairs], expected, atol=1e-5)
    assert np.mean(expected) > 0  # DPO widened the margins of what it trained on
    train_round(cfg, uow, items.round_id)  # same data: nothing recorded twice
    assert _count(uow, DpoMargin) == 7

    with uow() as s:
        summary = audit_summary(audit_outcomes(s))
    got = summary["cumulative"]
    assert got["pvar"]["dpo_margin"]["n"] + got["audit"]["dpo_margin"]["n"] == 7
    assert got["audit"]["dpo_margin"]["n"] == 2
    assert summary["margin_sentence"].startswith("DPO reward margin after training: PVar items ")


def test_no_margins_without_audit_items(uow, cfg, tiny_models):
    items = _round(uow, tiny_models)
    train_round(cfg, uow, items.round_id)
    assert _count(uow, DpoMargin) == 0
