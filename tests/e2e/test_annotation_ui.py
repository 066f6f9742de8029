"""An annotator in Argilla's real web UI (Debian's headless Chromium): sign in, prefer a response with a
rationale and submit, discard the next record; `pull` then finds both answers in our database."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation.dataset import ensure_dataset
from annotation.gateway import pull_labels, push_items
from annotation.records import flip
from storage.models import AnnotationItem, Label
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator, owner, unique

pytestmark = [pytest.mark.browser, pytest.mark.argilla, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_annotator_submits_and_discards_in_the_web_ui(argilla_stack: ArgillaTarget, uow) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` (scripts/dev setup does)")
    items = make_round_items(uow, 2)
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-ui"), argilla_stack.workspace)
    push_items(uow, dataset, items.round_id)
    who = annotator(argilla_stack, "ui")
    by_prompt = {items.prompts[i]: i for i in items.item_ids}
    ARTIFACTS.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{who.username}:{who.password}".encode()).decode()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{argilla_stack.url}/sign-in?auth={auth}")
            page.wait_for_url(lambda url: "/sign-in" not in url)
            page.goto(dataset.annotation_url)

            # Record 1: prefer the response shown as B, with a rationale, and submit.
            page.locator("label[for=preference_b]").wait_for()
            first = by_prompt[_shown_prompt(page, by_prompt)]
            page.locator("label[for=preference_b]").click()
            rationale = page.locator('[aria-label="Question: rationale"] [contenteditable=true]')
            rationale.click()
            page.keyboard.type("B answers the question.")
            page.screenshot(path=str(ARTIFACTS / "annotation_ui_before_submit.png"), full_page=True)
            page.get_by_role("button", name="Submit").click()

            # Record 2 comes up next: discard it.
            page.wait_for_function(
                "p => !document.body.innerText.includes(p)", arg=items.prompts[first], timeout=60_000
            )
            second = by_prompt[_shown_prompt(page, by_prompt)]
            page.get_by_role("button", name="Discard").click()
            page.wait_for_function(
                "p => !document.body.innerText.includes(p)", arg=items.prompts[second], timeout=60_000
            )
            page.screenshot(path=str(ARTIFACTS / "annotation_ui_done.png"), full_page=True)
        finally:
            browser.close()

    assert {first, second} == set(items.item_ids)
    report = pull_labels(uow, dataset, items.round_id)
    assert (report.new_labels, report.skipped) == (2, [])
    with uow() as s:
        labels = {lb.item_id: (lb.annotator, lb.choice, lb.rationale) for lb in s.scalars(select(Label))}
        decided = {i.id: (i.status, i.decision) for i in s.scalars(select(AnnotationItem))}
    assert labels == {
        first: (who.username, flip("b", items.swapped[first]), "B answers the question."),
        second: (who.username, "discard", None),
    }
    assert decided == {first: ("decided", flip("b", items.swapped[first])), second: ("undecided", None)}


def _shown_prompt(page, prompts: dict[str, str]) -> str:
    """Which of our prompts the page shows (waits until one is rendered)."""
    page.wait_for_function(
        "ps => ps.some(p => document.body.innerText.includes(p))", arg=list(prompts), timeout=60_000
    )
    text = page.inner_text("body")
    shown = [p for p in prompts if p in text]
    assert len(shown) == 1, shown
    return shown[0]
