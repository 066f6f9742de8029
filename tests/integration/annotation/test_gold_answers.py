"""Answers to gold records are stored with the time they were first given (Argilla's inserted_at), as items'
answers are: an edit later does not move the time the pace figure is measured on."""

from __future__ import annotations

from datetime import UTC, datetime

from annotation.gold import reserved_priorities, store_answers
from annotation.records import QUESTION
from storage.repositories.gold import add_gold_items, gold_answers, round_gold
from storage.statuses import RoundStatus
from tests.support.annotation_setup import make_round_items

FIRST, EDITED = "2026-03-01T10:00:00", "2026-03-01T10:05:00"


def test_a_gold_answer_keeps_the_time_it_was_first_given(uow) -> None:
    row = {"prompt": "Q?", "response_a": "x", "response_b": "y", "expected": "a", "source": "g.jsonl"}
    with uow() as s:
        add_gold_items(s, [{**row, "key": "k" * 64, "rationale": None, "source_id": None}])
    rnd = make_round_items(uow, 2, status=RoundStatus.COLLECTING)
    reserved_priorities(
        uow, rnd.round_id, 2, 1, blind=False, first_push=True
    )  # the shared dataset's gold record
    with uow() as s:
        [placed] = round_gold(s, rnd.round_id)
    response = {
        "id": "resp-1",
        "user_id": "u1",
        "status": "submitted",
        "values": {QUESTION: {"value": "b" if placed.swapped else "a"}},
        "inserted_at": FIRST,
        "updated_at": EDITED,  # edited (or re-submitted) five minutes later
    }
    assert store_answers(uow, [{"external_id": placed.id, "responses": [response]}], {"u1": "ann"}) == 1
    with uow() as s:
        [answer] = gold_answers(s)
    assert (answer.annotator, answer.answer) == ("ann", "a")
    assert answer.answered_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
