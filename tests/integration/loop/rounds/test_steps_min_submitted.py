"""`[argilla] min_submitted` per round, through `pvar-loop push`/`pull` against the real Argilla server: a round
collects with the overlap it was started with, and a round whose collection ended keeps its decisions (what
was trained on) whatever answers arrive later."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from annotation.dataset import open_dataset
from loop.cli.app import main
from loop.config import load_config
from loop.rounds import steps
from storage.models import AnnotationItem, Label, Round
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator_in, fresh_workspace, own_records, owner, respond, unique

pytestmark = pytest.mark.argilla


def _config(path: Path, dataset: str, workspace: str, min_submitted: int) -> Path:
    path.write_text(
        f'[paths]\ndata_dir = "{path.parent / "data"}"\n\n'
        f'[argilla]\nworkspace = "{workspace}"\ndataset = "{dataset}"\nmin_submitted = {min_submitted}\n'
    )
    return path


def _items(uow, round_id: int) -> dict[str, tuple[str, str | None, dict, str]]:
    with uow() as s:
        rows = s.scalars(select(AnnotationItem).where(AnnotationItem.round_id == round_id))
        return {i.id: (i.status, i.decision, i.votes, i.argilla_record_id) for i in rows}


def _overlap_in_argilla(stack: ArgillaTarget, dataset_id: str) -> int:
    r = httpx.get(f"{stack.url}/api/v1/datasets/{dataset_id}", headers=stack.headers, timeout=60)
    r.raise_for_status()
    return r.json()["distribution"]["min_submitted"]


def _own(stack: ArgillaTarget, who, name: str, item_ids: list[str]) -> list[str]:
    """Record ids of `item_ids` in `who`'s own dataset (blind overlap), read with their key."""
    mine = own_records(stack, who, name)
    assert set(item_ids) <= set(mine)
    return [mine[i] for i in item_ids]


def _min_submitted(uow, round_id: int) -> int | None:
    with uow() as s:
        return s.get(Round, round_id).min_submitted


def test_min_submitted_applies_from_the_next_round_and_closed_rounds_keep_their_decisions(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", argilla_stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", argilla_stack.api_key)
    # A workspace of its own: with overlap 2, records go to each of its annotators' own datasets.
    name, workspace = unique("ds-overlap"), fresh_workspace(argilla_stack)
    config = _config(tmp_path / "pvar-loop.toml", name, workspace, min_submitted=1)
    cli = ["--config", str(config)]
    first, second = (
        annotator_in(argilla_stack, workspace, "first"),
        annotator_in(argilla_stack, workspace, "second"),
    )

    # Round 1 collects with min_submitted = 1: one answer per item decides it.
    one = make_round_items(uow, 4, round_number=1, status=RoundStatus.COLLECTING)
    assert main([*cli, "push", "--round", "1"]) == 0
    assert _min_submitted(uow, one.round_id) == 1
    for _, _, _, record_id in _items(uow, one.round_id).values():
        respond(argilla_stack, first, record_id, "submitted", preference="a")
    assert main([*cli, "pull"]) == 0
    capsys.readouterr()
    decided = _items(uow, one.round_id)
    assert {status for status, *_ in decided.values()} == {"decided"}
    with uow() as s:  # round 1 was trained on these decisions and is done
        s.execute(update(Round).where(Round.id == one.round_id).values(status=RoundStatus.DONE))

    # The operator raises the overlap to 2; round 2 is the first to collect with it, and the dataset follows.
    _config(config, name, workspace, min_submitted=2)
    two = make_round_items(uow, 2, round_number=2, tag="r2 ", status=RoundStatus.COLLECTING)
    assert main([*cli, "push", "--round", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{first.username}: " in out and f"{second.username}: " in out  # each annotator's own link
    dataset_id = open_dataset(owner(argilla_stack), name, workspace).id
    assert _min_submitted(uow, two.round_id) == 2 and _min_submitted(uow, one.round_id) == 1
    assert _overlap_in_argilla(argilla_stack, dataset_id) == 2

    # A late, dissenting answer on round 1 (its records are back in the queues: the overlap went up), and
    # one answer per round-2 item.
    late_item = one.item_ids[0]
    respond(argilla_stack, second, decided[late_item][3], "submitted", preference="b")
    for record_id in _own(argilla_stack, first, name, two.item_ids):
        respond(argilla_stack, first, record_id, "submitted", preference="a")

    assert main([*cli, "pull", "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert _items(uow, one.round_id) == decided  # round 1's decisions are what was trained on: unchanged
    with uow() as s:
        late = s.scalar(select(Label).where(Label.item_id == late_item, Label.annotator == second.username))
    assert late is not None  # the late answer is stored ...
    assert pulled["late_labels"] == 1 and pulled["closed_items"] == 4  # ... and reported
    assert {status for status, *_ in _items(uow, two.round_id).values()} == {"pushed"}  # waits for 2 answers
    assert (pulled["decided"], pulled["waiting"]) == (0, 2)

    # Back to 1 while round 2 collects: round 2 keeps the 2 it started with, in our pull and in Argilla.
    _config(config, name, workspace, min_submitted=1)
    assert main([*cli, "push", "--round", "2"]) == 0
    assert main([*cli, "pull", "--round", "2"]) == 0
    out = capsys.readouterr().out
    assert "late" not in out
    assert {status for status, *_ in _items(uow, two.round_id).values()} == {"pushed"}
    assert _overlap_in_argilla(argilla_stack, dataset_id) == 2
    # The scheduler's pull step reads the same record.
    cfg = load_config(config)
    steps.pull(cfg, uow, two.round_id)
    assert {status for status, *_ in _items(uow, two.round_id).values()} == {"pushed"}
    assert _overlap_in_argilla(argilla_stack, dataset_id) == 2
    for record_id in _own(argilla_stack, second, name, two.item_ids):
        respond(argilla_stack, second, record_id, "submitted", preference="b")
    steps.pull(cfg, uow, two.round_id)
    assert {status for status, *_ in _items(uow, two.round_id).values()} == {"undecided"}  # a vs b
