"""External ids an annotator can read (annotation.gold.record_id, loop.rounds.pairing.item_id) cannot be
recomputed from what the record shows: the formulas used before the project secret (sha256 of round id,
prompt id and the two texts; of gold key, round id and username), tried in both A/B orders over every
plausible round id and username, match no external id read through the annotator's own API key."""

from __future__ import annotations

import hashlib
import re

import pytest

from annotation.dataset import ensure_dataset
from annotation.gateway import push_items
from annotation.gold import split_gold
from annotation.records import shown_pair
from loop.gold import gold_key
from loop.ingest import prompt_id
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator_in, fresh_workspace, owner, unique
from tests.support.gold_setup import add_gold, readable

pytestmark = pytest.mark.argilla
ROUND_IDS = range(1, 200)  # round ids are small integers


def _old_item_id(round_id: int, pid: str, a: str, b: str) -> str:
    h = hashlib.sha256()
    for part in (str(round_id), pid, a, b):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _old_gold_id(key: str, round_id: int, who: str) -> str:
    return hashlib.sha256(f"gold\0{key}\0{round_id}\0{who}".encode()).hexdigest()


def _guesses(record: dict, username: str) -> set[str]:
    """Every id the old formulas give for the record's shown texts, in both orders."""
    prompt = record["fields"]["prompt"]
    a, b = shown_pair(record["fields"])
    out: set[str] = set()
    for first, second in ((a, b), (b, a)):
        key = gold_key(prompt, first, second)
        for rid in ROUND_IDS:
            for pid in (prompt_id(prompt), hashlib.sha256(prompt.encode()).hexdigest()):
                out.add(_old_item_id(rid, pid, first, second))
            out |= {_old_gold_id(key, rid, who) for who in ("", username)}
    return out


@pytest.mark.parametrize("min_submitted", [1, 2], ids=["shared", "blind"])
def test_an_annotator_cannot_recompute_external_ids_from_a_record(
    argilla_stack: ArgillaTarget, uow, min_submitted: int
) -> None:
    workspace = fresh_workspace(argilla_stack)
    people = [annotator_in(argilla_stack, workspace, f"ids{k}") for k in range(min_submitted)]
    name = unique("ds-ids")
    dataset = ensure_dataset(owner(argilla_stack), name, workspace, min_submitted=min_submitted)
    tag = f"ids{min_submitted} "
    items = make_round_items(uow, 3, tag=tag)
    add_gold(uow, 2, tag)
    assert push_items(uow, dataset, items.round_id, order=items.item_ids, gold_per_round=2).gold > 0
    for p in people:
        seen = readable(argilla_stack, p.api_key, name)
        gold, others = split_gold(uow, seen)
        assert gold and len(others) >= 1  # gold records and items both checked
        assert all(re.fullmatch(r"[0-9a-f]{64}", r["external_id"]) for r in seen)
        for record in seen:
            assert record["external_id"] not in _guesses(record, p.username)
