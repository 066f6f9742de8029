"""Issue 14 point 11: `status` reads as a summary with a rounds table (no raw Python dicts); `--json` keeps every
figure for machines, per-round annotator agreement included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loop.cli.app import main
from loop.cli.status_view import render
from storage.models import Label, Round
from storage.statuses import RoundStatus
from tests.support.annotation_setup import make_round_items
from tests.support.labels import add_decided_labels

ROOT = Path(__file__).resolve().parents[2]

# item index -> votes: agree, disagree, agree (three annotators), one vote only (not counted)
VOTES = [
    {"alice": "a", "bob": "a"},
    {"alice": "a", "bob": "b"},
    {"alice": "tie", "bob": "tie", "carol": "tie"},
    {"alice": "b"},
]


@pytest.fixture
def project(sqlite_url, uow, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ACTOR", "alice")
    made = make_round_items(uow, 4, status=RoundStatus.COLLECTING)
    with uow() as s:
        s.get(Round, made.round_id).deadline_at = datetime.now(UTC) + timedelta(hours=1)  # as collection sets
        add_decided_labels(
            s,
            [
                Label(item_id=item, annotator=who, choice=choice)
                for item, votes in zip(made.item_ids, VOTES, strict=True)
                for who, choice in votes.items()
            ],
        )
    assert main(["budget", "set", "6"]) == 0
    return made


def _out(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_json_carries_per_round_agreement(project, capsys):
    status = json.loads(_out(capsys, "status", "--json"))
    (rnd,) = status["rounds"]
    agreement = rnd["agreement"]
    assert agreement["items"] == 3  # items with 2+ votes
    assert agreement["unanimous"] == pytest.approx(2 / 3)
    assert agreement["pairwise"] == pytest.approx((1 + 0 + 1) / 3)
    assert rnd["answers"] == 8 and status["answers"] == 8
    assert (rnd["decided"], rnd["ties"]) == (0, 0)  # nothing aggregated in this fixture


def test_human_status_is_a_summary_with_a_rounds_table(project, capsys):
    text = _out(capsys, "status")
    assert "{" not in text and "}" not in text, text  # no raw dicts (pool, payloads)
    lines = text.splitlines()
    assert "pool:       4 train prompts (4 scored, 0 unscored), 0 eval prompts" in lines, text
    assert "answers:    8 collected (one annotator's answer to one item each)" in lines
    header = next(line for line in lines if line.split()[:2] == ["round", "status"])
    assert header.split() == [
        "round",
        "status",
        "strategy",
        "budget",
        "items",
        "answered",
        "decided",
        "ties",
        "answers",
        "agreement",
    ]
    row = next(line for line in lines if line.strip().startswith("main/1"))
    cells = row.split()
    assert cells[:5] == ["main/1", "collecting", "pvar", "4", "4"] and cells[8] == "8", row
    assert row.endswith("67% of 3"), row
    assert "next: pvar-loop round advance 1" in text
    assert "new rounds: round 2 next, pvar budget 6 items" in lines
    assert "scheduler: not running" in text
    assert any(line.strip().endswith("alice: set budget (value 6, from_round 2, arm main)") for line in lines)
    assert "annotators:" in text


def test_annotators_render_one_line_each(project, capsys):
    status = json.loads(_out(capsys, "status", "--json"))
    status["annotators"] = [
        {"username": "alice", "submitted": 3, "discarded": 1},
        {"username": "bob", "submitted": 2, "discarded": 0},
    ]
    figures = status["reliability"]["annotators"]
    assert {"alice", "bob"} <= set(figures)
    status["reliability"] = {"annotators": {}, "rounds": []}  # none pulled: counts only
    lines = render(status)
    at = lines.index("annotators:")
    assert lines[at + 1 : at + 3] == [
        "  annotator alice: 3 submitted, 1 discarded",
        "  annotator bob: 2 submitted, 0 discarded",
    ]
    # With figures: on the same line, and a warning line for a flagged annotator.
    bob = figures["bob"] | {
        "flags": ["pace: median 0.5 s per answer over 25 gaps is below min_seconds_per_answer 3"]
    }
    status["reliability"] = {"annotators": {"alice": figures["alice"], "bob": bob}, "rounds": []}
    lines = render(status)
    at = lines.index("annotators:")
    assert lines[at + 1].startswith("  annotator alice: 3 submitted, 1 discarded; gold -, majority ")
    assert lines[at + 1].endswith(", - s/answer")  # the fixture's answers carry no times
    assert lines[at + 3] == (
        "warning: annotator bob flagged (still counted): pace: median 0.5 s per answer over 25 gaps is below "
        "min_seconds_per_answer 3"
    )
    status["excluded_annotators"] = [
        {"annotator": "bob", "since": "2026-01-01T00:00:00", "by": "ann", "reason": None}
    ]
    assert any(
        line.startswith("warning: annotator bob flagged (excluded): pace: ") for line in render(status)
    )
    status["annotators"] = []
    assert "annotators: none yet (`pvar-loop annotators add NAME`)" in render(status)


def test_empty_project_status(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PVAR_LOOP_DATABASE_URL", raising=False)
    assert main(["init"]) == 0
    text = _out(capsys, "status")
    assert "pool:       empty (`pvar-loop ingest FILE`)" in text
    assert "rounds: none yet" in text


def test_collecting_round_without_a_deadline_does_not_crash_status(project, uow, capsys):
    """A round put in `collecting` by hand (or by an older version) has no deadline: status says so."""
    with uow() as s:
        s.get(Round, project.round_id).deadline_at = None
    text = _out(capsys, "status")
    assert "items answered" in text and "no deadline" in text


def test_one_vocabulary_of_units_and_the_decision_rule(project, uow, capsys):
    """Issue 26: "labels (prompts)" for the budget, "labels" beside "answered", "decided" with ties in the table
    but not in the audit sentence. Now: items, answers, decided (a/b), ties, named once in `status` and
    `round status`, the budget in items everywhere it is set, and the min_submitted = 2 rule where it applies."""
    from loop.cli.rounds import UNITS
    from loop.config import SelectionConfig

    for args in (["status"], ["round", "status"]):
        text = _out(capsys, *args)
        assert f"units: {UNITS}" in text, text
        assert "labels" not in text, text
        assert "min_submitted = 2" not in text  # the fixture's round records no overlap of 2
    with uow() as s:
        s.get(Round, project.round_id).min_submitted = 2
    for args in (["status"], ["round", "status"]):
        assert "rule: one vote plus one discard decides an item under min_submitted = 2" in _out(
            capsys, *args
        )
    assert _out(capsys, "budget", "set", "5").startswith("budget = 5 items from round")
    assert SelectionConfig.model_fields["budget"].description.startswith("Items per round: prompts sent")
    assert "labels (prompts)" not in (ROOT / "docs" / "configuration.md").read_text()
    for doc in ("README.md", "docs/operators.md"):
        text = (ROOT / doc).read_text()
        assert "labels (prompts)" not in text and "labels per round" not in text, doc
