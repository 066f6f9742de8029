"""Labels written straight into the database, linked to their items' decisions as a pull that decided on them
links them (storage.models.DecisionLabel): for tests that set decisions by hand."""

from __future__ import annotations

from collections.abc import Iterable

from storage.models import DecisionLabel, Label


def add_decided_labels(session, labels: Iterable[Label]) -> None:
    rows = list(labels)
    session.add_all(rows)
    session.flush()
    session.add_all(DecisionLabel(item_id=lb.item_id, label_id=lb.id) for lb in rows)
