"""Record mapping, response parsing, judges and backoff: pure functions on hand-made inputs."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from annotation.api import Backoff
from annotation.dataset import MARKDOWN
from annotation.records import Answer, Rejected, flip, parse_response, shown_pair, to_record
from annotation.simulated.judges import LookupJudge, RewardJudge
from storage.repositories.items import ItemContent


def _item(swapped: bool) -> ItemContent:
    return ItemContent(
        id="item-1",
        round_number=2,
        strategy="pvar",
        swapped=swapped,
        prompt="Why is the sky blue?",
        text_a="Rayleigh scattering.",
        text_b="Because it is.",
        argilla_record_id=None,
    )


@pytest.mark.parametrize("swapped", [False, True])
def test_flip_is_its_own_inverse(swapped: bool) -> None:
    for choice in ("a", "b", "tie", "discard"):
        assert flip(flip(choice, swapped), swapped) == choice
    assert flip("a", swapped) == ("b" if swapped else "a")
    assert flip("tie", swapped) == "tie"


def test_record_shows_the_pair_in_swap_order_with_hidden_metadata() -> None:
    plain, swapped = to_record(_item(False), 3), to_record(_item(True), 3)
    assert plain["external_id"] == swapped["external_id"] == "item-1"
    assert plain["fields"] == {
        "prompt": "Why is the sky blue?",
        "responses": {"a": "Rayleigh scattering.", "b": "Because it is."},
    }
    assert swapped["fields"]["responses"] == {"a": "Because it is.", "b": "Rayleigh scattering."}
    assert shown_pair(swapped["fields"]) == ("Because it is.", "Rayleigh scattering.")
    # Nothing in the metadata says which side the reward model prefers, nor how high the prompt's PVar is (an
    # audit pick's is below the round's cut): annotators can read metadata through Argilla's API.
    assert plain["metadata"] == swapped["metadata"] == {"round": 2, "strategy": "pvar", "priority": 3}


def test_record_in_the_markdown_layout_has_stacked_fields() -> None:
    record = to_record(_item(True), layout=MARKDOWN)
    assert record["fields"] == {
        "prompt": "Why is the sky blue?",
        "response_a": "Because it is.",
        "response_b": "Rayleigh scattering.",
    }
    assert shown_pair(record["fields"]) == ("Because it is.", "Rayleigh scattering.")
    assert record["metadata"] == {"round": 2, "strategy": "pvar"}  # no priority given: none sent


def _response(status: str, **values) -> dict:
    return {
        "status": status,
        "values": {k: {"value": v} for k, v in values.items()},
        "user_id": "u1",
        "updated_at": "2026-01-02T03:04:05.123456",
    }


def test_parse_response_maps_through_the_swap_and_keeps_tie_and_discard() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 123456)
    assert parse_response(_response("submitted", preference="a"), swapped=True) == Answer("b", None, when)
    assert parse_response(_response("submitted", preference="a"), swapped=False) == Answer("a", None, when)
    assert parse_response(_response("submitted", preference="tie", rationale=" same "), True) == Answer(
        "tie", "same", when
    )
    assert parse_response(_response("discarded", rationale="gibberish"), True) == Answer(
        "discard", "gibberish", when
    )
    assert parse_response({"status": "discarded", "values": None}, False) == Answer("discard", None, None)
    assert parse_response(_response("draft", preference="a"), False) is None


def test_parse_response_keeps_when_the_answer_was_first_given() -> None:
    """Argilla's inserted_at (first given) apart from updated_at (moves with an edit): the annotator's pace."""
    edited = _response("submitted", preference="b") | {"inserted_at": "2026-01-02T03:00:00"}
    parsed = parse_response(edited, swapped=False)
    assert (parsed.submitted_at, parsed.answered_at) == (
        datetime(2026, 1, 2, 3, 4, 5, 123456),
        datetime(2026, 1, 2, 3, 0, 0),
    )
    assert parse_response(_response("discarded"), True).answered_at is None  # not sent: unknown


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (_response("submitted", preference="unsure"), "unknown 'preference' label 'unsure'"),
        (_response("submitted", rationale="only text"), "submitted without a 'preference' answer"),
        ({"status": "submitted", "values": None}, "submitted without a 'preference' answer"),
        ({"status": "weird"}, "unknown response status 'weird'"),
    ],
)
def test_malformed_responses_are_rejected_with_a_reason(response: dict, reason: str) -> None:
    parsed = parse_response(response, swapped=False)
    assert isinstance(parsed, Rejected) and parsed.reason.startswith(reason)


def test_reward_judge_follows_bradley_terry_and_is_reproducible() -> None:
    scores = {"good": 1.0, "bad": 0.0}
    judge = RewardJudge(lambda _p, r: scores[r], seed=7)
    assert judge.p_a("p", "good", "bad") == pytest.approx(1 / (1 + math.exp(-1)))
    answers = [judge(f"prompt {i}", "good", "bad") for i in range(2000)]
    share = answers.count("a") / len(answers)
    assert abs(share - 1 / (1 + math.exp(-1))) < 0.03  # 0.731 +- 3 standard errors
    assert answers == [
        RewardJudge(lambda _p, r: scores[r], seed=7)(f"prompt {i}", "good", "bad") for i in range(2000)
    ]
    assert answers != [
        RewardJudge(lambda _p, r: scores[r], seed=8)(f"prompt {i}", "good", "bad") for i in range(2000)
    ]
    sharp = RewardJudge(lambda _p, r: scores[r], seed=7, temperature=0.01)
    assert {sharp(f"q{i}", "good", "bad") for i in range(200)} == {"a"}
    assert {sharp(f"q{i}", "bad", "good") for i in range(200)} == {"b"}
    assert RewardJudge(lambda _p, r: scores[r], tie_margin=2.0)("p", "good", "bad") == "tie"
    with pytest.raises(ValueError, match="temperature"):
        RewardJudge(lambda _p, r: 0.0, temperature=0)


def test_lookup_judge_finds_a_pair_shown_either_way() -> None:
    judge = LookupJudge({("p", "x", "y"): "a", ("q", "x", "y"): "tie"}, default="discard")
    assert judge("p", "x", "y") == "a"
    assert judge("p", "y", "x") == "b"
    assert judge("q", "y", "x") == "tie"
    assert judge("r", "x", "y") == "discard"
    with pytest.raises(ValueError, match="must be one of"):
        LookupJudge({("p", "x", "y"): "maybe"})


def test_backoff_is_exponential_bounded_and_validated() -> None:
    assert list(Backoff(attempts=5, base_s=0.5, cap_s=3.0).delays()) == [0.5, 1.0, 2.0, 3.0]
    assert list(Backoff(attempts=1).delays()) == []
    with pytest.raises(ValueError, match="attempts"):
        Backoff(attempts=0)
