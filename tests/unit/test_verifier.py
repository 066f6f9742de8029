"""The rule-based verifier on hand-written responses, and the seeded demo prompt generator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loop.demo.world import make_prompt, write_demo_prompts
from loop.evaluation.verifier import CHECKS, check, verify

CASES = [
    ({"kind": "max_words", "n": 5}, "One two three four.", "One two three four five six."),
    ({"kind": "keyword", "word": "important"}, "This is Important.", "This is importance."),
    ({"kind": "no_letter", "letter": "y"}, "No such letter here.", "Yes indeed."),
    ({"kind": "numbers", "n": 2}, "In 1969 and 2024.", "In 1969 only."),
    ({"kind": "start_word", "word": "Yes"}, "Yes, the moon.", "The moon, yes."),
    ({"kind": "end_word", "word": "moon"}, "Look at the moon.", "The moon is bright."),
    ({"kind": "no_word", "word": "the"}, "A moon shines.", "The moon shines."),
    ({"kind": "title"}, "<<Moonlight>> It glows.", "<<title>> It glows."),
    ({"kind": "no_commas"}, "No commas here.", "One, two."),
    ({"kind": "word_twice", "word": "quiet"}, "Quiet nights are quiet.", "Quiet nights."),
    ({"kind": "all_caps"}, "ALL CAPS 42.", "Not All caps."),
    ({"kind": "bullets", "n": 2}, "* one\n* two", "* one"),
    ({"kind": "quotes"}, '"Quoted answer."', "Not quoted."),
]


@pytest.mark.parametrize(("constraint", "passes", "fails"), CASES)
def test_each_check(constraint, passes, fails):
    assert check(passes, constraint) and not check(fails, constraint)


def test_every_kind_has_a_case():
    assert {c["kind"] for c, _, _ in CASES} == set(CHECKS)


def test_verify_is_fraction_and_rejects_unknown():
    cs = [{"kind": "no_commas"}, {"kind": "keyword", "word": "simple"}]
    assert verify("simple, yes", cs) == 0.5 and verify("simple yes", cs) == 1.0
    with pytest.raises(ValueError, match="unknown constraint kind 'rhyme'"):
        verify("x", [{"kind": "rhyme"}])
    with pytest.raises(ValueError, match="no constraints"):
        verify("x", [])


def test_demo_prompts_are_seeded_and_distinct(tmp_path):
    a = make_prompt(np.random.default_rng(3))
    assert a == make_prompt(np.random.default_rng(3))
    assert 1 <= len(a["metadata"]["constraints"]) <= 2
    train, ev = write_demo_prompts(tmp_path, n_train=40, n_eval=10, seed=1)
    rows = [json.loads(x) for p in (train, ev) for x in p.read_text().splitlines()]
    assert len(rows) == 50 and len({r["prompt"] for r in rows}) == 50


def test_seed_pool_is_disjoint_and_leaves_train_and_eval_unchanged(tmp_path):
    train, ev = write_demo_prompts(tmp_path / "a", n_train=30, n_eval=8, seed=2)
    train2, ev2, seed = write_demo_prompts(tmp_path / "b", n_train=30, n_eval=8, seed=2, n_seed=12)
    assert train.read_text() == train2.read_text() and ev.read_text() == ev2.read_text()
    seeds = {json.loads(x)["prompt"] for x in seed.read_text().splitlines()}
    others = {json.loads(x)["prompt"] for p in (train2, ev2) for x in p.read_text().splitlines()}
    assert len(seeds) == 12 and not seeds & others
