"""Issue 26: the report's rounds table fits a 1280 px wide browser window (the result columns, policy out and
the eval win rate, were off-screen: a 1487 px table in an 1150 px box), checked in headless Chromium on a page
with the longest values a real project writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.report.contents import EvalPoint, ReportData, RoundRow
from loop.report.html import render
from tests.e2e.test_annotation_ui import ARGS, ARTIFACTS, CHROMIUM

pytestmark = [pytest.mark.browser]


def _round(number: int, status: str, reason: str | None) -> RoundRow:
    checkpoint = f"main-r{number}-60b7f92d2740"
    return RoundRow(
        id=number,
        arm="main",
        number=number,
        status=status,
        reason=reason,
        strategy="reward-gap",
        seed=number,
        budget=120,
        policy_in=f"main-r{number - 1}-60b7f92d2740" if number > 1 else "init-policy-731aca07910b",
        policy_out=checkpoint,
        created_at=None,
        finished_at=None,
        items=120,
        pushed=120,
        decided=118,
        ties=14,
        undecided=2,
        labels=240,
        annotators=2,
        agreement_items=120,
        pairwise_agreement=0.8125,
        fleiss_kappa=0.6021,
        eval=EvalPoint(
            checkpoint, "init-policy-731aca07910b", "verifier", 100, 0.6556, 0.5012, 0.8125, 0.375, 0.0, 0.75
        ),
        scoring={
            "candidates": 400,
            "drawn": 400,
            "free_pool": 12000,
            "prompts_scored": 400,
            "samples_generated": 2000,
            "scoring_s": 1234.5,
        },
    )


# Argilla usernames run up to 200 characters; operators use long ones (mail addresses) more than short.
ANNOTATORS = ("annotator-with-a-rather-long-name@example.org", "bob", "carol_the_fast_one")


def _figures(k: int) -> dict:
    """An annotator's cumulative figures (loop.quality.reliability.Figures.as_json) with wide values."""
    return {
        "answers": 12345,
        "gold_answers": 1234,
        "gold_correct": 1000,
        "gold_accuracy": 0.8104,
        "gold_interval": [0.7876, 0.8313],
        "majority_items": 11111,
        "majority_agreement": 0.7312,
        "kappa": {},
        "ab_answers": 12000,
        "shown_a": 6000,
        "position_bias": 0.5,
        "position_interval": [0.4911, 0.5089],
        "tie_rate": 0.12,
        "discard_rate": 0.01,
        "seconds_per_answer": 1234.5,
        "timed_gaps": 12000,
        "flags": ["pace: median 0.4 s per answer over 12000 gaps is below min_seconds_per_answer 3"]
        * (k == 2),
    }


def _page(tmp_path: Path) -> Path:
    rounds = [
        _round(1, "done", None),
        _round(2, "cancelled", "operator: round cancel 2 --reason 'wrong prompts ingested'"),
        _round(3, "done", "no a/b decisions to train on; policy unchanged"),
    ]
    data = ReportData(
        generated_at="2026-12-07T01:00:00+00:00",
        pool={"prompts": {"train": 12000, "eval": 100}, "train_scored": 1200},
        total_labels=720,
        rounds=rounds,
        arms={"main": "reward-gap"},
        pools={},
        eval_reference="init-policy-731aca07910b",
        eval_judge="verifier",
        other_eval_pairs=[],
        curves={},
        annotators={"annotators": {name: _figures(k) for k, name in enumerate(ANNOTATORS)}, "rounds": []},
    )
    page = tmp_path / "index.html"
    page.write_text(render(data, {}, {"eval": "-", "pvar": "-", "agreement": "-", "budget": "-"}), "utf-8")
    return page


@pytest.mark.slow
def test_rounds_table_fits_a_1280_px_window(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` (scripts/dev setup does)")
    page_file = _page(tmp_path)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_file.as_uri())
            table = page.locator("section.rounds table")
            box = page.evaluate(
                "() => { const t = document.querySelector('section.rounds table');"
                " return [t.scrollWidth, t.parentElement.clientWidth, document.documentElement.scrollWidth]; }"
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report-rounds-1280.png"), full_page=True)
            annotators = page.evaluate(
                "() => { const t = document.querySelector('section.annotators table');"
                " return [t.scrollWidth, t.parentElement.clientWidth]; }"
            )
            headers = table.locator("th")
            right = {
                name: headers.filter(has_text=name).first.bounding_box()
                for name in ("policy out", "eval win rate")
            }
        finally:
            browser.close()
    table_width, box_width, page_width = box
    assert table_width <= box_width and page_width <= 1280, box  # no horizontal scrolling, in the box or page
    assert annotators[0] <= annotators[1], annotators  # the annotators table (issue 23) too
    for name, b in right.items():
        assert b is not None and b["x"] + b["width"] <= 1280, (name, b)  # the result columns are on screen
