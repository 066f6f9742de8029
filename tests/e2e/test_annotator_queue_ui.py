"""The annotator's daily view in Argilla's real web UI (Debian's headless Chromium, 1280 px wide): the link
`push` prints opens the current round in priority order (rank 1 first, an audit pick among the rest); A and
B sit side by side under the prompt as plain text, with the short rules visible; the round filter leaves
the older round out and the count of what is left follows the annotator's submissions."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import update

from annotation.dataset import ensure_dataset
from annotation.gateway import push_items
from annotation.progress import round_progress
from loop.rounds.priority import priority_order
from storage.models import AnnotationItem, Generation
from storage.repositories.items import round_item_scores
from tests.e2e.test_annotation_ui import ARGS, ARTIFACTS, CHROMIUM, _shown_prompt
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import REWARD_MODEL, make_round_items
from tests.support.argilla_helpers import annotator, owner, unique

pytestmark = [pytest.mark.browser, pytest.mark.argilla, pytest.mark.slow]

RAW_A = "```python\nprint('fenced')\n```"  # Markdown would make a code block of it
RAW_B = "<b>x</b> and **not bold**"  # HTML would make a bold x of it


def test_annotator_sees_the_round_in_priority_order_side_by_side_as_plain_text(
    argilla_stack: ArgillaTarget, uow
) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` (scripts/dev setup does)")
    old = make_round_items(uow, 2, round_number=1, tag="Earlier round. ")
    now = make_round_items(uow, 4, round_number=2, tag="Current round. ")
    audit = next(i for i in now.item_ids if "2.0:" in now.prompts[i])  # the lowest PVar: an audit pick
    with uow() as s:
        s.execute(update(AnnotationItem).where(AnnotationItem.id == audit).values(audit=True))
        order = priority_order("pvar", round_item_scores(s, now.round_id, REWARD_MODEL), seed=5)
        top = s.get(AnnotationItem, order[0])
        s.execute(update(Generation).where(Generation.id == top.generation_a_id).values(text=RAW_A))
        s.execute(update(Generation).where(Generation.id == top.generation_b_id).values(text=RAW_B))
    # Rank 1 is the highest-PVar prompt (the test's PVar grows with the prompt's index), and it is not the
    # first record by insertion: pushing without an order inserts by item id, and a re-push with the order
    # only updates the records' priority. Whatever the UI shows first comes from the sort on priority.
    assert now.prompts[order[0]] == "Current round. Question 2.3: explain topic 3 briefly."
    assert order[0] != min(now.item_ids)
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-queue"), argilla_stack.workspace)
    push_items(uow, dataset, old.round_id)
    push_items(uow, dataset, now.round_id)
    push_items(uow, dataset, now.round_id, include_pushed=True, order=order)
    who = annotator(argilla_stack, "queue")
    auth = base64.b64encode(f"{who.username}:{who.password}".encode()).decode()
    prompts = {now.prompts[i]: i for i in now.item_ids} | {old.prompts[i]: i for i in old.item_ids}
    ARTIFACTS.mkdir(exist_ok=True)
    first_shot, second_shot = ARTIFACTS / "annotator_queue_rank1.png", ARTIFACTS / "annotator_queue_rank2.png"

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{argilla_stack.url}/sign-in?auth={auth}")
            page.wait_for_url(lambda url: "/sign-in" not in url)
            page.goto(dataset.round_url(2))

            # Order: rank 1 first; the round filter: 4 records of round 2 (the dataset holds 6).
            assert prompts[_shown_prompt(page, prompts)] == order[0]
            page.get_by_text("1 of 4", exact=True).wait_for()

            # Side by side: A and B on one row, A left of B, both under the prompt.
            pair = page.frame_locator("iframe").first
            box_a = pair.locator("#pvar-response-a").bounding_box()
            box_b = pair.locator("#pvar-response-b").bounding_box()
            prompt_box = page.get_by_text(now.prompts[order[0]], exact=True).bounding_box()
            assert abs(box_a["y"] - box_b["y"]) <= 3, (box_a, box_b)
            assert box_a["x"] + box_a["width"] <= box_b["x"], (box_a, box_b)
            assert prompt_box["y"] + prompt_box["height"] <= min(box_a["y"], box_b["y"])

            # Plain text: the raw model output shows literally, no code block, no bold element.
            shown = (
                pair.locator("#pvar-response-a").inner_text() + pair.locator("#pvar-response-b").inner_text()
            )
            assert "```python" in shown and "<b>x</b>" in shown and "**not bold**" in shown
            assert pair.locator("b, strong, pre, code").count() == 0

            # The short guidelines with the tie rule, visible without a click.
            rules = pair.get_by_text("Choose Tie only when neither is clearly better", exact=False)
            assert rules.is_visible()
            page.screenshot(path=str(first_shot), full_page=True)

            page.locator("label[for=preference_a]").click()
            page.get_by_role("button", name="Submit").click()
            page.wait_for_function(
                "p => !document.body.innerText.includes(p)", arg=now.prompts[order[0]], timeout=60_000
            )
            # Rank 2 next ("2 of 4": the UI steps on through the list it loaded).
            assert prompts[_shown_prompt(page, prompts)] == order[1]
            page.get_by_text("2 of 4", exact=True).wait_for()
            # Opened again from the link (the next day): what is left of the round, 3 records, rank 2 first.
            page.goto(dataset.round_url(2))
            assert prompts[_shown_prompt(page, prompts)] == order[1]
            page.get_by_text("1 of 3", exact=True).wait_for()
            page.screenshot(path=str(second_shot), full_page=True)
        finally:
            browser.close()

    progress = round_progress(dataset, 2)
    assert (progress.total, progress.completed, progress.pending) == (4, 1, 3)
    assert round_progress(dataset, 1).pending == 2  # the earlier round is untouched
    assert first_shot.stat().st_size > 10_000 and second_shot.stat().st_size > 10_000
