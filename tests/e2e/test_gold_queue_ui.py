"""A gold record in the annotator's queue in Argilla's real web UI (headless Chromium): the annotator works
through a round with a gold item mixed in, and every record, the gold one included, shows the same page
once its own texts are taken out (same fields, titles, rules, questions and buttons; the same structure of
the side-by-side pair). A screenshot of the gold record goes under test-artifacts/."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from annotation.dataset import ensure_dataset
from annotation.gateway import pull_labels, push_items
from loop.gold import gold_key
from storage.repositories.gold import add_gold_items, gold_answers
from tests.e2e.test_annotation_ui import ARGS, ARTIFACTS, CHROMIUM, _shown_prompt
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator_in, fresh_workspace, owner, unique

pytestmark = [pytest.mark.browser, pytest.mark.argilla, pytest.mark.slow]

# The DOM of the pair's frame without its texts: tags, ids and classes, in order.
STRUCTURE_JS = """body => {
  const walk = el => el.tagName + '#' + el.id + '.' + el.className + '[' + [...el.children].map(walk).join(',') + ']';
  return walk(body);
}"""


def _blank(text: str, texts: list[str]) -> str:
    """The page's text without the record's own texts and without numbers (the "1 of 4" counter)."""
    for t in sorted(texts, key=len, reverse=True):
        text = text.replace(t, "<TEXT>")
    return re.sub(r"\d+", "#", text)


def test_a_gold_record_looks_like_the_rounds_items_in_the_annotators_queue(
    argilla_stack: ArgillaTarget, uow
) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's `chromium` (scripts/dev setup does)")
    workspace = fresh_workspace(argilla_stack)
    who = annotator_in(argilla_stack, workspace, "goldui")
    items = make_round_items(uow, 3, tag="Gold round. ")
    prompt = "Gold round. Question 1.9: explain topic 9 briefly."  # shaped like the round's prompts
    a, b = "answer 2 to <the question>", "answer 0 to <the question>"
    with uow() as s:
        add_gold_items(
            s,
            [
                {
                    "key": gold_key(prompt, a, b),
                    "prompt": prompt,
                    "response_a": a,
                    "response_b": b,
                    "expected": "a",
                    "rationale": None,
                    "source": "gold.jsonl",
                    "source_id": None,
                }
            ],
        )
    dataset = ensure_dataset(owner(argilla_stack), unique("ds-goldui"), workspace)
    assert push_items(uow, dataset, items.round_id, order=items.item_ids, gold_per_round=1).gold == 1
    texts = {items.prompts[i]: [items.prompts[i], items.best[i], items.worst[i]] for i in items.item_ids}
    texts[prompt] = [prompt, a, b]
    auth = base64.b64encode(f"{who.username}:{who.password}".encode()).decode()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "annotator_queue_gold.png"
    seen: dict[str, tuple[str, str, str]] = {}  # prompt -> (page text, pair text, pair structure), blanked

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{argilla_stack.url}/sign-in?auth={auth}")
            page.wait_for_url(lambda url: "/sign-in" not in url)
            page.goto(dataset.round_url(items.round_number))
            for _ in range(4):
                shown = _shown_prompt(page, {t: t for t in texts})
                pair = page.frame_locator("iframe").first
                pair.locator("#pvar-response-b").wait_for()
                seen[shown] = (
                    _blank(page.inner_text("body"), texts[shown]),
                    _blank(pair.locator("body").inner_text(), texts[shown]),
                    pair.locator("body").evaluate(STRUCTURE_JS),
                )
                if shown == prompt:
                    page.screenshot(path=str(shot), full_page=True)
                page.locator("label[for=preference_a]").click()
                page.get_by_role("button", name="Submit").click()
                page.wait_for_function("p => !document.body.innerText.includes(p)", arg=shown, timeout=60_000)
        finally:
            browser.close()

    assert set(seen) == set(texts)  # the round's 3 items and the gold record, each once
    assert len(set(seen.values())) == 1, {k: v[:2] for k, v in seen.items()}
    assert shot.stat().st_size > 10_000
    pulled = pull_labels(uow, dataset, items.round_id)
    assert (pulled.new_labels, pulled.gold_answers) == (3, 1)
    with uow() as s:
        [answer] = gold_answers(s, round_id=items.round_id)
    assert answer.annotator == who.username and answer.answer in ("a", "b")
