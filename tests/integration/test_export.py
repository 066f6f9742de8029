"""What operators see of their labels: answers per annotator in `status`, and `export --format trl` keeping
who answered, why, in which round, ties (`--include-ties`) and the operator's own prompt ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.cli.app import main
from storage.models import AnnotationItem, Label, Prompt
from storage.statuses import PRODUCTION_ARM, RoundStatus
from tests.support.annotation_setup import make_round_items
from tests.support.labels import add_decided_labels


@pytest.fixture
def labelled(uow, sqlite_url, tmp_path, monkeypatch):
    """4 items of round 1: decided a (2 votes), decided b (a vote and a discard), tie, undecided; prompts
    with the source ids ingest would have set."""
    items = make_round_items(uow, 4, status=RoundStatus.COLLECTING)
    a, b, tie, undecided = items.item_ids
    answers = {
        a: [("alice", "a", "A is right."), ("bob", "a", None)],
        b: [("alice", "b", None), ("bob", "discard", "cannot judge")],
        tie: [("alice", "tie", "both fine"), ("carol", "tie", None)],
        undecided: [("bob", "a", None), ("carol", "b", None)],
    }
    outcome = {
        a: ("decided", "a"),
        b: ("decided", "b"),
        tie: ("decided", "tie"),
        undecided: ("undecided", None),
    }
    with uow() as s:
        for item_id, rows in answers.items():
            item = s.get(AnnotationItem, item_id)
            item.status, item.decision = outcome[item_id]
            s.get(Prompt, item.prompt_id).source_id = f"my-{item_id[:4]}"
            add_decided_labels(
                s, (Label(item_id=item_id, annotator=w, choice=c, rationale=r) for w, c, r in rows)
            )
    config = tmp_path / "pvar-loop.toml"
    config.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\n')
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    return items, ["--config", str(config)]


def test_status_counts_answers_per_annotator(labelled, capsys) -> None:
    _, cli = labelled
    assert main([*cli, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["annotators"] == [
        {"username": "alice", "submitted": 3, "discarded": 0},
        {"username": "bob", "submitted": 2, "discarded": 1},
        {"username": "carol", "submitted": 2, "discarded": 0},
    ]
    assert main([*cli, "status"]) == 0
    out = capsys.readouterr().out
    assert "annotator bob: 2 submitted, 1 discarded" in out
    assert "annotator alice: 3 submitted, 0 discarded" in out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_trl_export_keeps_annotators_rationales_round_and_source_ids(labelled, tmp_path, capsys) -> None:
    items, cli = labelled
    a, b, tie, _ = items.item_ids
    out = tmp_path / "prefs.jsonl"
    assert main([*cli, "export", "--format", "trl", str(out)]) == 0
    assert "wrote 2 preference pairs" in capsys.readouterr().out
    rows = {r["prompt_id"]: r for r in _rows(out)}
    assert len(rows) == 2 and {r["decision"] for r in rows.values()} == {"preferred"}
    row_a = next(r for r in rows.values() if r["prompt"][0]["content"] == items.prompts[a])
    row_b = next(r for r in rows.values() if r["prompt"][0]["content"] == items.prompts[b])
    assert (
        row_a["chosen"][0]["content"] == items.best[a] and row_a["rejected"][0]["content"] == items.worst[a]
    )
    assert row_b["chosen"][0]["content"] == items.worst[b]  # b won: generation_b is chosen
    assert (row_a["annotators"], row_a["choices"], row_a["rationales"]) == (
        ["alice", "bob"],
        ["chosen", "chosen"],
        ["A is right.", None],
    )
    assert (row_b["annotators"], row_b["choices"], row_b["rationales"]) == (
        ["alice", "bob"],
        ["chosen", "discard"],
        [None, "cannot judge"],
    )
    assert (row_a["round"], row_a["arm"], row_a["round_id"]) == (1, PRODUCTION_ARM, items.round_id)
    assert row_a["source_id"] == f"my-{a[:4]}" and row_b["source_id"] == f"my-{b[:4]}"

    ties = tmp_path / "with-ties.jsonl"
    assert main([*cli, "export", "--include-ties", str(ties)]) == 0
    assert "wrote 3 preference pairs" in capsys.readouterr().out
    tie_row = next(r for r in _rows(ties) if r["decision"] == "tie")
    assert tie_row["prompt"][0]["content"] == items.prompts[tie] and tie_row["choices"] == ["tie", "tie"]
    assert {tie_row["chosen"][0]["content"], tie_row["rejected"][0]["content"]} == {
        items.best[tie],
        items.worst[tie],
    }


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_trl_export_loads_with_datasets_and_trl(labelled, tmp_path, capsys, suffix) -> None:
    import datasets
    from trl.data_utils import is_conversational

    _, cli = labelled
    out = tmp_path / f"prefs{suffix}"
    assert main([*cli, "export", "--include-ties", str(out)]) == 0
    ds = datasets.load_dataset(
        "json" if suffix == ".jsonl" else "parquet", data_files=str(out), split="train"
    )
    assert ds.num_rows == 3
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)  # what TRL's DPO/reward trainers read
    assert {"annotators", "rationales", "round", "decision", "source_id"} <= set(ds.column_names)
    assert is_conversational(ds[0])
    dpo = ds.filter(lambda r: r["decision"] != "tie")  # a TRL consumer drops the ties for DPO
    assert dpo.num_rows == 2 and sorted(ds["decision"]) == ["preferred", "preferred", "tie"]


def test_parquet_exports_concatenate_when_no_pair_has_a_rationale(labelled, uow, tmp_path) -> None:
    """Issue 26: `rationales` (and source_id) were typed null in an export where nobody wrote one, so two
    exports' tables could not be concatenated; the prompts' extra ingest columns were dropped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    items, cli = labelled
    a = items.item_ids[0]
    both = tmp_path / "with.parquet"
    assert main([*cli, "export", str(both)]) == 0
    with uow() as s:
        for label in s.query(Label).all():
            label.rationale = None
        for prompt in s.query(Prompt).all():
            prompt.source_id = None
        s.get(Prompt, s.get(AnnotationItem, a).prompt_id).meta = {"team": "north", "lang": "en"}
    none = tmp_path / "without.parquet"
    assert main([*cli, "export", str(none)]) == 0
    tables = [pq.read_table(both), pq.read_table(none)]
    assert tables[1].schema.field("rationales").type == pa.list_(pa.string())
    assert tables[1].schema.field("source_id").type == pa.string()
    assert pa.concat_tables(tables).num_rows == 4
    rows = tables[1].to_pylist()
    row_a = next(r for r in rows if r["prompt"][0]["content"] == items.prompts[a])
    assert json.loads(row_a["prompt_metadata"]) == {"lang": "en", "team": "north"}
    assert all(json.loads(r["prompt_metadata"]) == {} for r in rows if r is not row_a)
