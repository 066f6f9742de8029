"""`push` checks Argilla, not only our "pushed" flag: a record deleted on the Argilla side is re-created under
the same external id (our item id), and the push says how many it re-created (issue 11, point 4)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from loop.cli.app import main
from storage.models import AnnotationItem, Round
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import external_ids, unique

pytestmark = pytest.mark.argilla


def _record_ids(uow) -> dict[str, str | None]:
    with uow() as s:
        return {i.id: i.argilla_record_id for i in s.scalars(select(AnnotationItem))}


def test_push_recreates_records_deleted_from_argilla(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path: Path, monkeypatch, capsys
) -> None:
    items = make_round_items(uow, 5)
    with uow() as s:  # a round that collects (push does not move it)
        s.get(Round, items.round_id).status = RoundStatus.COLLECTING
    config = tmp_path / "pvar-loop.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n[argilla]\nworkspace = "{argilla_stack.workspace}"\n'
        f'dataset = "{unique("ds-recreate")}"\nmin_submitted = 1\n'
    )
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", argilla_stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", argilla_stack.api_key)
    cli = ["--config", str(config)]

    assert main([*cli, "push", "--round", "1"]) == 0
    out = capsys.readouterr().out
    dataset_id = re.search(r"/dataset/([0-9a-f-]+)/annotation-mode", out).group(1)
    before = _record_ids(uow)
    gone = items.item_ids[1:3]
    r = httpx.delete(
        f"{argilla_stack.url}/api/v1/datasets/{dataset_id}/records",
        params={"ids": ",".join(before[i] for i in gone)},
        headers=argilla_stack.headers,
        timeout=60,
    )
    assert r.status_code == 204, r.text
    assert sorted(external_ids(argilla_stack, dataset_id)) == sorted(set(items.item_ids) - set(gone))

    assert main([*cli, "push", "--round", "1"]) == 0
    out = capsys.readouterr().out
    assert "re-created 2 records that were no longer in Argilla" in out, out
    assert sorted(external_ids(argilla_stack, dataset_id)) == items.item_ids  # one record per item
    after = _record_ids(uow)
    assert {i: after[i] for i in items.item_ids if i not in gone} == {
        i: before[i] for i in items.item_ids if i not in gone
    }
    for i in gone:  # the new records, found under our id, are what the database now points at
        record = httpx.get(
            f"{argilla_stack.url}/api/v1/records/{after[i]}", headers=argilla_stack.headers, timeout=60
        ).json()
        assert record["external_id"] == i
    with uow() as s:
        assert set(s.scalars(select(AnnotationItem.status))) == {"pushed"}

    assert main([*cli, "push", "--round", "1"]) == 0
    assert "nothing to push" in capsys.readouterr().out


def test_collecting_recreates_a_dataset_deleted_in_argilla(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path: Path, monkeypatch, capsys, caplog
) -> None:
    """The collecting step (each poll and tick of `run`) puts the records back, as `push` does, instead of
    pulling an empty dataset for ever with a warning per missing record per poll."""
    from annotation.dataset import find_dataset
    from loop.config import load_config
    from loop.rounds.steps import pull

    items = make_round_items(uow, 4, status=RoundStatus.COLLECTING)
    config = tmp_path / "pvar-loop.toml"
    name = unique("ds-deleted")
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n[argilla]\nworkspace = "{argilla_stack.workspace}"\n'
        f'dataset = "{name}"\nmin_submitted = 1\n'
    )
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", argilla_stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", argilla_stack.api_key)
    assert main(["--config", str(config), "push", "--round", "1"]) == 0
    dataset_id = re.search(r"/dataset/([0-9a-f-]+)/annotation-mode", capsys.readouterr().out).group(1)
    r = httpx.delete(
        f"{argilla_stack.url}/api/v1/datasets/{dataset_id}", headers=argilla_stack.headers, timeout=60
    )
    assert r.status_code == 200, r.text

    cfg = load_config(config)
    caplog.set_level("INFO")
    for _ in range(5):  # five polls
        pull(cfg, uow, items.round_id)
    with httpx.Client(base_url=argilla_stack.url, headers=argilla_stack.headers, timeout=60) as http:
        now = find_dataset(http, name, argilla_stack.workspace)
    assert now["id"] != dataset_id
    assert sorted(external_ids(argilla_stack, now["id"])) == sorted(items.item_ids)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # the first poll finds the records gone (one line each) and re-creates them; later polls are quiet
    assert len(warnings) == len(items.item_ids) + 1, warnings
    assert "re-creating them" in warnings[-1]
