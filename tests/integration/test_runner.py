"""The label-efficiency experiment on tiny models: arms are separate lineages drawing independently from one
pool, the simulated annotator writes labels like the Argilla pull, the step-matched control trains as many
steps as random, and the results file agrees with the database."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlalchemy import func, select

from loop.config import parse_config
from loop.demo.world import write_demo_prompts
from loop.evaluation.verifier import verify
from loop.experiment.annotator import score_annotation, verifier_annotation
from loop.experiment.results import format_table
from loop.experiment.runner import ExperimentPlan, arms_by_name, run_experiment
from loop.ingest import ingest_file
from storage.models import (
    AnnotationItem,
    Checkpoint,
    Evaluation,
    EvaluationSample,
    Generation,
    Label,
    Prompt,
    Round,
    TrainingRun,
)
from storage.repositories.evaluations import evaluation_samples
from storage.statuses import PRODUCTION_ARM, Metric

pytestmark = pytest.mark.slow  # one fixture runs 8 rounds of real (tiny) scoring, DPO and evaluation: ~90 s

ARMS = ["pvar", "random-s0", "random-disagree", "pvar-matched"]


def _words(prompt: str, response: str) -> float:
    return float(len(response.split()))


def tiny_config(root, tiny_models, **extra):
    raw = {
        "paths": {"data_dir": str(root / "data")},
        "policy": {"model": str(tiny_models.policy_dir), "dtype": "float32"},
        "generation": {"k": 3, "max_new_tokens": 8, "batch_size": 8},
        "reward": {"model": str(tiny_models.reward_dir), "dtype": "float32", "max_length": 128},
        "training": {
            "learning_rate": 5e-5,
            "batch_size": 2,
            "max_length": 128,
            "lora": False,
            "dtype": "float32",
        },
        "evaluation": {"judge": "verifier", "max_new_tokens": 8, "n_bootstrap": 200, "samples_per_prompt": 2},
    }
    for section, values in extra.items():
        raw.setdefault(section, {}).update(values)
    return parse_config(raw, "<test>", env={})


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, tiny_models):
    from storage.db import UnitOfWork, make_engine
    from storage.migrate import upgrade

    root = tmp_path_factory.mktemp("experiment")
    engine = make_engine(f"sqlite:///{root / 'exp.db'}")
    upgrade(engine)
    uow = UnitOfWork(engine)
    train, evals = write_demo_prompts(root / "prompts", n_train=10, n_eval=3, seed=5)
    with uow() as session:
        ingest_file(session, train)
        ingest_file(session, evals, split="eval")
    cfg = tiny_config(root, tiny_models)
    plan = ExperimentPlan(arms=arms_by_name(ARMS), rounds=2, budget=3)
    out = root / "results.json"
    printed = []
    # Tiny random models almost never satisfy a demo constraint, so the verifier would call every pair a tie;
    # this annotator prefers the longer answer (equal word counts tie), which tiny models do vary.
    annotator = score_annotation(_words, "sim-words", tie_margin=0.5)
    results = run_experiment(cfg, uow, plan, annotator, out=out, on_round=printed.append)
    yield uow, cfg, results, out, printed
    engine.dispose()


def test_every_arm_runs_two_rounds_from_its_own_lineage(experiment):
    uow, _, _, _, printed = experiment
    assert sorted({p["arm"] for p in printed}) == sorted(ARMS) and len(printed) == 8
    with uow() as s:
        for arm in ARMS:
            rounds = s.scalars(select(Round).where(Round.arm == arm).order_by(Round.number)).all()
            assert [(r.number, r.status) for r in rounds] == [(1, "done"), (2, "done")], arm
            assert {r.budget for r in rounds} == {3}
            # Round 2 starts where round 1 of the same arm ended, and a trained checkpoint is the arm's own.
            assert rounds[1].policy_in == rounds[0].policy_out
            for r in rounds:
                if r.policy_out != r.policy_in:
                    ckpt = s.get(Checkpoint, r.policy_out)
                    assert ckpt.id.startswith(f"{arm}-r{r.number}-") and ckpt.base_id == r.policy_in
        assert s.scalar(select(Round).where(Round.arm == PRODUCTION_ARM)) is None


def test_no_prompt_is_labelled_twice_within_an_arm_but_arms_share_the_pool(experiment):
    uow, *_ = experiment
    with uow() as s:
        rows = s.execute(
            select(Round.arm, AnnotationItem.prompt_id)
            .join(Round, Round.id == AnnotationItem.round_id)
            .join(Label, Label.item_id == AnnotationItem.id)
        ).all()
        pool = set(s.scalars(select(Prompt.id).where(Prompt.split == "train")))
    per_arm = Counter((arm, pid) for arm, pid in rows)
    assert per_arm and max(per_arm.values()) == 1  # one annotator: one label per item, each prompt once
    prompts = {arm: {pid for a, pid in per_arm if a == arm} for arm in ARMS}
    assert all(p <= pool for p in prompts.values())
    # pvar and pvar-matched rank the same scores in round 1: the same prompts, picked independently.
    with uow() as s:
        first = {
            arm: set(
                s.scalars(
                    select(AnnotationItem.prompt_id)
                    .join(Round, Round.id == AnnotationItem.round_id)
                    .where(Round.arm == arm, Round.number == 1)
                )
            )
            for arm in ("pvar", "pvar-matched")
        }
    assert first["pvar"] == first["pvar-matched"] and first["pvar"]


def test_random_disagree_draws_only_pairs_the_annotator_can_tell_apart(experiment):
    """The control's "disagree" is the annotator's view of the shown pair (stored per scored pool), not pvar > 0,
    which a continuous reward model satisfies almost everywhere."""
    from storage.models import PromptScore

    uow, *_ = experiment
    taken: set[str] = set()
    with uow() as s:
        for number in (1, 2):
            rnd = s.scalar(select(Round).where(Round.arm == "random-disagree", Round.number == number))
            flags = dict(
                s.execute(
                    select(PromptScore.prompt_id, PromptScore.value).where(
                        PromptScore.checkpoint_id == rnd.policy_in, PromptScore.metric == Metric.DISAGREE
                    )
                ).all()
            )
            items = s.scalars(select(AnnotationItem).where(AnnotationItem.round_id == rnd.id)).all()
            assert flags and items
            for item in items:  # every shown pair the flag calls a disagreement differs in word count
                a, b = (s.get(Generation, g).text for g in (item.generation_a_id, item.generation_b_id))
                differs = _words("", a) != _words("", b)
                assert flags[item.prompt_id] == float(differs)
            free_disagreeing = sum(v > 0 for pid, v in flags.items() if pid not in taken)
            picked = [flags[i.prompt_id] for i in items]
            # drawn among the free disagreeing prompts first: a tie only when too few of them are left
            assert sum(picked) == min(len(picked), free_disagreeing)
            taken |= {i.prompt_id for i in items}


def test_simulated_labels_follow_the_judge_and_the_swap(experiment):
    uow, *_ = experiment
    with uow() as s:
        rows = s.execute(
            select(Label.choice, AnnotationItem, Generation.text)
            .join(AnnotationItem, AnnotationItem.id == Label.item_id)
            .join(Generation, Generation.id == AnnotationItem.generation_a_id)
        ).all()
        choices = Counter()
        for choice, item, text_a in rows:
            gap = _words("", text_a) - _words("", s.get(Generation, item.generation_b_id).text)
            # Our orientation whatever side the pair was shown on (temperature 0.1: one word is a sure win).
            assert choice == ("tie" if gap == 0 else "a" if gap > 0 else "b")
            assert item.status == "decided" and item.decision == choice
            assert item.argilla_record_id.startswith("sim-")
            choices[(choice, item.swapped)] += 1
    assert {c for c, _ in choices} >= {"a", "b"} and {sw for _, sw in choices} == {True, False}


def test_verifier_annotator_prefers_the_better_response_and_ties_equal_ones(experiment):
    uow, *_ = experiment
    ((_, judge),) = verifier_annotation(uow, seed=0).judges
    short, long = "Yes.", " ".join(["word"] * 60)
    compared = 0
    with uow() as s:
        for p in s.scalars(select(Prompt)):
            c = p.meta["constraints"]
            assert judge(p.text, short, short) == "tie"
            gap = verify(short, c) - verify(long, c)
            if gap:
                compared += 1
                assert judge(p.text, short, long) == ("a" if gap > 0 else "b")
    assert compared  # e.g. a word limit tells the two apart


def test_step_matched_arm_trains_exactly_as_many_steps_as_random(experiment):
    uow, *_ = experiment
    with uow() as s:

        def runs(arm):
            return {
                n: (tr.label_count, tr.metrics["steps"])
                for n, tr in s.execute(
                    select(Round.number, TrainingRun)
                    .join(TrainingRun, TrainingRun.round_id == Round.id)
                    .where(Round.arm == arm)
                )
            }

        matched, random = runs("pvar-matched"), runs("random-s0")
    assert matched == random and matched  # same pairs, same steps, in every round random trained


def test_results_file_matches_the_database(experiment):
    uow, _, _, out, _ = experiment
    on_disk = json.loads(out.read_text())
    assert on_disk["arms"].keys() == set(ARMS)
    with uow() as s:
        for arm in ARMS:
            for r in on_disk["arms"][arm]["rounds"]:
                rnd = s.get(Round, r["round_id"])
                assert (rnd.arm, rnd.number, rnd.status, rnd.policy_out) == (
                    arm,
                    r["number"],
                    r["status"],
                    r["policy_out"],
                )
                labels = s.scalars(
                    select(Label.choice)
                    .join(AnnotationItem, AnnotationItem.id == Label.item_id)
                    .where(AnnotationItem.round_id == rnd.id)
                ).all()
                assert r["labels"] == len(labels) <= 3
                assert r["decided_ab"] == sum(c in ("a", "b") for c in labels)
                assert r["ties"] == sum(c == "tie" for c in labels)
                ev = s.scalar(select(Evaluation).where(Evaluation.checkpoint_id == rnd.policy_out))
                if r["evaluation"] is None:
                    assert r["train_steps"] is None
                else:
                    assert r["evaluation"]["win_rate"] == ev.win_rate
                    assert r["evaluation"]["ci_low"] <= ev.win_rate <= r["evaluation"]["ci_high"]
                    assert r["evaluation"]["policy_mean"] == ev.details["policy_mean"]
                    assert r["evaluation"]["evaluation_id"] == ev.id
                    assert r["evaluation"]["samples_per_prompt"] == 2
                    low, high = r["evaluation"]["policy_ci_low"], r["evaluation"]["policy_ci_high"]
                    assert low <= ev.details["policy_mean"] <= high
                assert r["wall_s"] > 0
    table = format_table(on_disk)
    assert all(arm in table for arm in ARMS) and "win rate" in table and "judge mean" in table


def _reference_rows(session, evaluation_id):
    return [r for r in evaluation_samples(session, evaluation_id) if r.side == "reference"]


def test_every_arm_is_evaluated_against_one_reference_draw(experiment):
    """The initial policy is sampled and judged once; every arm's evaluations reuse those rows."""
    uow, *_ = experiment
    with uow() as s:
        evals = s.scalars(select(Evaluation)).all()
        assert len(evals) >= 4 and len({e.reference_key for e in evals}) == 1
        owners = [e.id for e in evals if e.reference_samples_id is None]
        assert len(owners) == 1 and {e.reference_samples_id for e in evals} == {None, owners[0]}
        reference = s.scalar(
            select(func.count()).where(EvaluationSample.side == "reference").select_from(EvaluationSample)
        )
        assert reference == 3 * 2  # 3 eval prompts x 2 samples, once
        for e in evals:
            assert len(_reference_rows(s, e.id)) == 6
            assert (
                s.scalar(
                    select(func.count()).where(
                        EvaluationSample.evaluation_id == e.id, EvaluationSample.side == "policy"
                    )
                )
                == 6
            )


def test_reset_arm_forgets_one_arm_and_keeps_the_others(experiment, tmp_path):
    """On a copy of the experiment's database: pvar-matched is forgotten entirely, the other arms and the
    initial policy's samples are untouched, and the database's foreign keys still hold."""
    import sqlite3

    from sqlalchemy import func, text

    from loop.experiment.reset import reset_arm
    from storage.db import UnitOfWork, make_engine
    from storage.models import OperatorAction, PromptScore

    uow, *_ = experiment
    with sqlite3.connect(uow.engine.url.database) as src, sqlite3.connect(tmp_path / "copy.db") as dst:
        src.backup(dst)  # WAL mode: a file copy would miss what is still in the -wal file
    copy = UnitOfWork(make_engine(f"sqlite:///{tmp_path / 'copy.db'}"))

    def counts(u):
        with u() as s:
            per_arm = dict(s.execute(select(Round.arm, func.count()).group_by(Round.arm)).all())
            base = s.scalar(select(func.count()).where(Generation.checkpoint_id.not_like("%-r%-%")))
            scores = s.scalar(select(func.count()).select_from(PromptScore))
            return per_arm, base, scores

    before = counts(copy)
    done = reset_arm(copy, "pvar-matched", data_dir=tmp_path)
    after = counts(copy)
    assert done.rounds == 2 and done.removed_dirs == []  # checkpoints live outside this data dir: kept
    assert "pvar-matched" not in after[0] and {**after[0], "pvar-matched": 2} == before[0]
    assert after[1] == before[1]  # the initial policy's samples are shared: kept
    with copy() as s:
        assert s.scalar(select(func.count()).where(Checkpoint.id.like("pvar-matched-%"))) == 0
        assert s.scalar(select(OperatorAction).where(OperatorAction.action == "experiment.reset-arm"))
        assert s.execute(text("PRAGMA foreign_key_check")).all() == []
    # Forgetting the arm whose evaluation holds the shared reference rows hands them to a surviving one.
    with copy() as s:
        owner = s.scalar(select(Evaluation).where(Evaluation.reference_samples_id.is_(None)))
        owner_arm = s.scalar(select(Round.arm).where(Round.policy_out == owner.checkpoint_id))
    reset_arm(copy, owner_arm, data_dir=tmp_path)
    with copy() as s:
        survivors = s.scalars(select(Evaluation)).all()
        assert survivors and owner.id not in {e.id for e in survivors}
        assert all(len(_reference_rows(s, e.id)) == 6 for e in survivors)
        assert s.execute(text("PRAGMA foreign_key_check")).all() == []
    with pytest.raises(ValueError, match="no rounds for arm 'pvar-matched'"):
        reset_arm(copy, "pvar-matched", data_dir=tmp_path)
    with pytest.raises(ValueError, match="production history"):
        reset_arm(copy, "main", data_dir=tmp_path)
    copy.engine.dispose()
