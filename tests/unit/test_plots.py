"""Issue 26: the report's plots read right at the edges: one round's eval point on an axis from 0 labels, and a
cancelled round's items shown as withdrawn, not as pushed to annotators."""

from __future__ import annotations

from loop.report.contents import CurvePoint, EvalPoint, ReportData, RoundRow
from loop.report.plots import budget_bars, eval_xlim, plot_budget, plot_eval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(number: int, status: str) -> RoundRow:
    return RoundRow(
        id=number,
        arm="main",
        number=number,
        status=status,
        reason=None,
        strategy="pvar",
        seed=0,
        budget=8,
        policy_in="init",
        policy_out=None,
        created_at=None,
        finished_at=None,
        items=8,
        pushed=8,
        decided=6 if status == "done" else 0,
    )


def _data(rounds: list[RoundRow], labels: int) -> ReportData:
    point = CurvePoint(1, labels, 6, EvalPoint("main-r1", "init", "verifier", 10, 0.6, 0.5, 0.7))
    return ReportData(
        generated_at="now",
        pool={"prompts": {}, "train_scored": 0},
        total_labels=labels,
        rounds=rounds,
        arms={"main": "pvar"},
        pools={},
        eval_reference="init",
        eval_judge="verifier",
        other_eval_pairs=[],
        curves={"main": [point]},
    )


def test_one_rounds_eval_point_sits_on_an_axis_from_zero_labels(tmp_path):
    low, high = eval_xlim(16)
    assert low < 0 < 16 < high and high - low > 16  # not 15.2 to 16.8 around the point
    assert plot_eval(_data([_row(1, "done")], 16), tmp_path / "eval.png")
    assert (tmp_path / "eval.png").read_bytes().startswith(PNG_MAGIC)


def test_a_cancelled_rounds_items_are_withdrawn_not_pushed(tmp_path):
    rounds = [_row(1, "done"), _row(2, "cancelled")]
    bars = budget_bars(rounds)
    assert bars["items pushed"][1] == [8, 0]
    assert bars["withdrawn (round cancelled)"][1] == [0, 8]
    assert "withdrawn (round cancelled)" not in budget_bars(rounds[:1])  # no legend entry without one
    assert plot_budget(_data(rounds, 16), tmp_path / "budget.png")
    assert (tmp_path / "budget.png").read_bytes().startswith(PNG_MAGIC)
