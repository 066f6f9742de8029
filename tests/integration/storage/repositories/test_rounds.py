"""`status`, `report` and `experiment` show the same per-round numbers: all read storage.repositories.rounds.round_counts."""

from __future__ import annotations

import pytest

from loop.config import parse_config
from loop.experiment.results import collect_results
from loop.experiment.runner import ArmSpec
from loop.report.data import collect
from storage.models import AnnotationItem, Checkpoint, Generation, Label, Prompt, Round
from storage.repositories import queries
from storage.repositories import rounds as round_repo
from storage.repositories.rounds import RoundCounts
from storage.statuses import PRODUCTION_ARM, ItemStatus, RoundStatus

ARM = "exp-a"
# (status, decision, labels) per item of round 1; round 2 has two pending items and no labels.
ROUND_1 = [
    (ItemStatus.DECIDED, "a", 3),
    (ItemStatus.DECIDED, "b", 2),
    (ItemStatus.DECIDED, "tie", 2),
    (ItemStatus.UNDECIDED, None, 3),
    (ItemStatus.PUSHED, None, 1),
    (ItemStatus.PENDING, None, 0),
]
EXPECTED_1 = RoundCounts(
    items=6, pending=1, pushed=5, decided=3, decided_ab=2, ties=1, undecided=1, labels=11
)
EXPECTED_2 = RoundCounts(items=2, pending=2)


def _fill(uow) -> tuple[int, int, int]:
    """Rounds 1 and 2 of ARM with the items above, and an empty main round. Returns their ids."""
    with uow() as s:
        s.add(Checkpoint(id="c0", path="hub/c0"))
        rounds = [
            Round(arm=ARM, number=1, status=RoundStatus.DONE, budget=6, strategy="pvar", policy_in="c0"),
            Round(arm=ARM, number=2, status=RoundStatus.PUSHED, budget=2, strategy="pvar", policy_in="c0"),
            Round(arm=PRODUCTION_ARM, number=1, budget=2, strategy="random", policy_in="c0"),
        ]
        s.add_all(rounds)
        s.flush()
        plan = [(rounds[0], row) for row in ROUND_1] + [(rounds[1], (ItemStatus.PENDING, None, 0))] * 2
        for i, (rnd, (status, decision, n_labels)) in enumerate(plan):
            pid = f"{i:064d}"
            s.add(Prompt(id=pid, text=f"prompt {i}", source="test", split="train"))
            s.flush()
            gens = [
                Generation(prompt_id=pid, checkpoint_id="c0", sample_index=k, text=f"{i}/{k}") for k in (0, 1)
            ]
            s.add_all(gens)
            s.flush()
            item_id = f"{i:064x}"
            s.add(
                AnnotationItem(
                    id=item_id,
                    round_id=rnd.id,
                    prompt_id=pid,
                    generation_a_id=gens[0].id,
                    generation_b_id=gens[1].id,
                    status=status,
                    decision=decision,
                )
            )
            s.flush()
            s.add_all(Label(item_id=item_id, annotator=f"ann{j}", choice="a") for j in range(n_labels))
        return rounds[0].id, rounds[1].id, rounds[2].id


def _views(uow, cfg):
    """{(arm, number): {view: numbers}} as status, report and experiment show them."""
    with uow() as s:
        status = {(r["arm"], r["number"]): r for r in queries.rounds_summary(s)}
        report = {(r.arm, r.number): r for r in collect(s).rounds}
        results = collect_results(s, cfg, [ArmSpec(ARM, "pvar")], {})
    experiment = {(ARM, r["number"]): r for r in results["arms"][ARM]["rounds"]}
    return status, report, experiment


@pytest.fixture
def cfg():
    return parse_config({}, env={})


def test_status_report_and_experiment_agree(uow, cfg):
    _fill(uow)
    status, report, experiment = _views(uow, cfg)
    for number, want in ((1, EXPECTED_1), (2, EXPECTED_2)):
        key = (ARM, number)
        assert (status[key]["items"], status[key]["answers"]) == (want.items, want.labels)
        assert (status[key]["decided"], status[key]["ties"]) == (want.decided_ab, want.ties)  # a tie apart
        r = report[key]
        assert (r.items, r.pushed, r.pending, r.decided, r.ties, r.undecided, r.labels) == (
            want.items,
            want.pushed,
            want.pending,
            want.decided_ab,  # the report's "decided" is an a/b majority too; ties apart
            want.ties,
            want.undecided,
            want.labels,
        )
        e = experiment[key]
        assert (e["items"], e["labels"], e["decided_ab"], e["ties"], e["undecided"]) == (
            want.items,
            want.labels,
            want.decided_ab,
            want.ties,
            want.undecided,
        )
    assert status[(PRODUCTION_ARM, 1)]["items"] == report[(PRODUCTION_ARM, 1)].items == 0


def test_round_counts_is_the_one_definition(uow, cfg):
    r1, r2, main = _fill(uow)
    with uow() as s:
        assert round_repo.round_counts(s) == {r1: EXPECTED_1, r2: EXPECTED_2}
        assert round_repo.round_counts(s, [r2, main]) == {r2: EXPECTED_2}


def test_every_view_reads_round_counts(uow, cfg, monkeypatch):
    """Change the one function and every view changes with it: none of them counts on its own."""
    r1, r2, _ = _fill(uow)
    fake = RoundCounts(
        items=101, pending=102, pushed=103, decided=104, decided_ab=105, ties=106, undecided=107, labels=108
    )
    monkeypatch.setattr(round_repo, "round_counts", lambda session, round_ids=None: {r1: fake, r2: fake})
    status, report, experiment = _views(uow, cfg)
    key = (ARM, 1)
    assert (status[key]["items"], status[key]["answers"]) == (101, 108)
    r = report[key]
    assert (r.items, r.pushed, r.pending, r.decided, r.ties, r.undecided, r.labels) == (
        101,
        103,
        102,
        105,
        106,
        107,
        108,
    )
    e = experiment[key]
    assert (e["items"], e["labels"], e["decided_ab"], e["ties"], e["undecided"]) == (101, 108, 105, 106, 107)
