"""The round step's push order, from the database: the strategy's ranking rebuilt from the stored scores of the
round's input policy and the configured reward model, audit picks among the rest."""

from __future__ import annotations

from sqlalchemy import update

from loop.config import Config
from loop.rounds.steps import push_order
from storage.models import AnnotationItem
from tests.support.annotation_setup import REWARD_MODEL, make_round_items


def test_push_order_puts_the_highest_pvar_first_and_hides_the_audit_pick(uow) -> None:
    items = make_round_items(uow, 6)  # PVar grows with the prompt's index: Question 1.5 has the highest
    by_prompt = {items.prompts[i].split(":")[0]: i for i in items.item_ids}
    audit = by_prompt["Question 1.0"]  # the lowest PVar, as an audit pick below the round's cut would be
    with uow() as s:
        s.execute(update(AnnotationItem).where(AnnotationItem.id == audit).values(audit=True))
    cfg = Config.model_validate({"reward": {"model": REWARD_MODEL}})

    order = push_order(cfg, uow, items.round_id)
    assert sorted(order) == items.item_ids
    picks = [i for i in order if i != audit]
    assert picks == [by_prompt[f"Question 1.{k}"] for k in (5, 4, 3, 2, 1)]
    assert order.index(audit) != 5  # not last, where the selection put it (seeded: the same every push)
    assert push_order(cfg, uow, items.round_id) == order

    # Scores of another reward model do not count: the picks fall back to id order.
    other = Config.model_validate({"reward": {"model": "another-rm"}})
    assert [i for i in push_order(other, uow, items.round_id) if i != audit] == sorted(picks)
