"""`[argilla] aggregation = "dawid-skene"` on constructed answers in a real database: with a history in which
two annotators always answer "a" and three careful ones agree with each other, Dawid-Skene (fitted on every
stored answer of the project) decides an item the majority ties on and overturns a majority of the two
careless ones; the decision, its method and its posterior confidence are stored and exported. Majority, the
default, stores the share of votes as its confidence."""

from __future__ import annotations

import json
import random

from sqlalchemy import select, update

from annotation import answers
from annotation.exclusions import redecide
from loop.export import export_preferences
from storage.models import AnnotationItem, Round
from storage.repositories.labels import LabelRow, add_label_versions
from storage.statuses import RoundStatus
from tests.support.annotation_setup import make_round_items

CAREFUL, CARELESS = ("g1", "g2", "g3"), ("bad1", "bad2")


def _label(item_id: str, who: str, choice: str) -> LabelRow:
    return LabelRow(item_id, who, choice, None, None, annotator_id=f"id-{who}")


def _outcomes(uow, round_id: int) -> dict[str, tuple]:
    with uow() as s:
        rows = s.scalars(select(AnnotationItem).where(AnnotationItem.round_id == round_id))
        return {i.id: (str(i.status), i.decision, i.decision_method, i.confidence) for i in rows}


def test_dawid_skene_decides_a_tie_and_overturns_two_careless_annotators(uow, tmp_path) -> None:
    history = make_round_items(uow, 30, round_number=1, tag="history ", status=RoundStatus.DONE)
    current = make_round_items(uow, 3, round_number=2, tag="open ", status=RoundStatus.COLLECTING)
    rng = random.Random(7)
    rows = []
    for item_id in history.item_ids:
        truth = rng.choice("ab")
        rows += [_label(item_id, g, truth if rng.random() < 0.9 else "ab"[truth == "a"]) for g in CAREFUL]
        rows += [_label(item_id, b, "a") for b in CARELESS]
    tied, outvoted, agreed = current.item_ids
    rows += [_label(tied, "bad1", "a"), _label(tied, "g2", "b")]
    rows += [_label(outvoted, "bad1", "a"), _label(outvoted, "bad2", "a"), _label(outvoted, "g1", "b")]
    rows += [_label(agreed, "g1", "b"), _label(agreed, "g3", "b")]
    with uow() as s:
        add_label_versions(s, rows)
        s.execute(update(Round).where(Round.id == current.round_id).values(min_submitted=2))
        s.execute(update(AnnotationItem).values(argilla_record_id="rec", status="pushed"))

    with uow() as s:
        redecide(s, None, fallback=2)  # majority, the default
    majority = _outcomes(uow, current.round_id)
    assert majority[tied][:3] == ("undecided", None, "majority") and majority[tied][3] is None
    assert majority[outvoted][:3] == ("decided", "a", "majority")
    assert abs(majority[outvoted][3] - 2 / 3) < 1e-9  # the share of the votes
    assert majority[agreed] == ("decided", "b", "majority", 1.0)

    with uow() as s:
        redecide(s, None, fallback=2, method="dawid-skene")
    ds = _outcomes(uow, current.round_id)
    assert ds[tied][:3] == ("decided", "b", "dawid-skene") and 0.5 < ds[tied][3] < 1.0
    assert ds[outvoted][:3] == ("decided", "b", "dawid-skene") and 0.5 < ds[outvoted][3] < 1.0
    assert ds[agreed][:3] == ("decided", "b", "dawid-skene") and ds[agreed][3] > ds[tied][3]
    assert _outcomes(uow, history.round_id) == dict.fromkeys(history.item_ids, ("pushed", None, None, None))

    out = tmp_path / "prefs.jsonl"
    with uow() as s:
        assert export_preferences(s, out) == 3
    exported = {r["prompt_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert {r["decision_method"] for r in exported.values()} == {"dawid-skene"}
    with uow() as s:
        by_prompt = {
            i.prompt_id: i.confidence
            for i in s.scalars(select(AnnotationItem).where(AnnotationItem.round_id == current.round_id))
        }
    assert {p: r["confidence"] for p, r in exported.items()} == by_prompt


def test_pull_aggregate_leaves_excluded_annotators_out_of_dawid_skene(uow) -> None:
    """The same constructed answers, the careful g2 excluded: the tied item has one counted answer (waiting
    for the overlap) and g2's answers do not feed the model."""
    from storage.repositories.exclusions import add_exclusion
    from storage.repositories.items import pushed_items
    from storage.repositories.labels import labels_of

    current = make_round_items(uow, 1, round_number=1, status=RoundStatus.COLLECTING)
    [item] = current.item_ids
    with uow() as s:
        add_label_versions(s, [_label(item, "bad1", "a"), _label(item, "g2", "b")])
        s.execute(update(AnnotationItem).values(argilla_record_id="rec", status="pushed"))
        add_exclusion(s, "g2", "alice", "test")
    with uow() as s:
        report = answers.PullReport()
        items = {i.id: i for i in pushed_items(s)}
        answers.aggregate(
            s, items, labels_of(s), {current.round_id: 2}, report, excluded={"g2"}, method="dawid-skene"
        )
        assert (report.waiting, report.decided) == (1, 0)
    assert _outcomes(uow, current.round_id)[item] == ("pushed", None, None, None)


def test_dawid_skene_leaves_a_near_tie_undecided_below_min_confidence(uow) -> None:
    """One "a" against one "b" from two annotators of nearly equal accuracy: Dawid-Skene leans to "a" at about
    0.54; below `min_confidence` (default 0.6) the item stays undecided, as majority leaves it, and no DPO pair
    comes of it. The same answers again are not fitted again; a new answer is."""
    from annotation.aggregate import _fit

    history = make_round_items(uow, 20, round_number=1, tag="history ", status=RoundStatus.DONE)
    current = make_round_items(uow, 1, round_number=2, tag="open ", status=RoundStatus.COLLECTING)
    [item] = current.item_ids
    rows = [_label(item, "g1", "a"), _label(item, "g2", "b")]
    for n, item_id in enumerate(history.item_ids):  # g3 always right; g1 wrong twice, g2 three times
        truth, wrong = "ab"[n % 2], "ba"[n % 2]
        rows += [_label(item_id, "g1", wrong if n in (0, 1) else truth)]
        rows += [_label(item_id, "g2", wrong if n in (10, 11, 13) else truth), _label(item_id, "g3", truth)]
    with uow() as s:
        add_label_versions(s, rows)
        s.execute(update(Round).where(Round.id == current.round_id).values(min_submitted=2))
        s.execute(update(AnnotationItem).values(argilla_record_id="rec", status="pushed"))

    with uow() as s:
        redecide(s, None, fallback=2, method="dawid-skene", min_confidence=0.5)
    [(status, decision, method, confidence)] = _outcomes(uow, current.round_id).values()
    assert (status, decision, method) == ("decided", "a", "dawid-skene") and 0.5 < confidence < 0.6
    fits = _fit.cache_info().misses
    with uow() as s:
        report = redecide(s, None, fallback=2, method="dawid-skene")  # the default min_confidence: 0.6
    assert (report.decided, report.undecided) == (0, 1)
    assert _outcomes(uow, current.round_id)[item] == ("undecided", None, "dawid-skene", confidence)
    assert _fit.cache_info().misses == fits  # nothing new: the fit was reused
    with uow() as s:
        add_label_versions(s, [_label(item, "g3", "a")])
        redecide(s, None, fallback=2, method="dawid-skene")
    assert _fit.cache_info().misses == fits + 1
    assert _outcomes(uow, current.round_id)[item][:3] == ("decided", "a", "dawid-skene")
