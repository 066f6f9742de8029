"""Where annotators start: a round's priority link(s), the annotation page sorted by priority and filtered to
the round, one shared or (blind overlap) one per annotator, and how every command words them."""

from __future__ import annotations

from annotation.blind import annotator_links, blind
from annotation.dataset import DatasetHandle

EVERYONE = ""  # queue_links' key of the link every annotator shares


def queue_links(dataset: DatasetHandle, round_number: int) -> dict[str, str]:
    """THE priority link(s) of a round: who -> the annotation page sorted by priority and filtered to the round
    (EVERYONE: the dataset every annotator shares; with blind overlap, each annotator's own). Every command
    that shows the link reads this (or the copy recorded on the round at its push)."""
    if blind(dataset):  # blind overlap: each annotator labels in a dataset of their own
        return annotator_links(dataset, round_number)
    return {EVERYONE: dataset.round_url(round_number)}


def link_lines(round_number: int, links: dict[str, str]) -> list[str]:
    """How every command says where to annotate a round: one line per link."""
    return [
        f"annotate at {url}  (round {round_number}, in priority order)"
        if who == EVERYONE
        else f"annotator {who}: {url}  (round {round_number}, in priority order)"
        for who, url in sorted(links.items())
    ]
