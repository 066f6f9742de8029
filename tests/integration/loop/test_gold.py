"""`pvar-loop gold add|list` against a real SQLite database: good JSONL and CSV files stored once, every bad
row named in one `error:` line with nothing stored, a gold prompt that is also a pool prompt allowed and said."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from loop.cli.app import main
from loop.gold import add_gold_file
from storage.db import UnitOfWork, make_engine
from storage.models import GoldItem

GOOD = [
    {"prompt": "What is 2+2?", "response_a": "4", "response_b": "5", "expected": "a", "rationale": "math"},
    {"prompt": "Capital of France?", "response_a": "Lyon", "response_b": "Paris", "expected": "B"},
    {"prompt": "Say hi.", "response_a": "hi", "response_b": "hello", "expected": "tie", "id": 7},
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "p.db"
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    assert main(["--config", str(cfg), "db", "upgrade"]) == 0
    return cfg, f"sqlite:///{db}"


def _gold_count(url: str) -> int:
    engine = make_engine(url)
    try:
        with UnitOfWork(engine)() as s:
            return s.scalar(select(func.count()).select_from(GoldItem))
    finally:
        engine.dispose()


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_add_jsonl_and_csv_then_list(project, tmp_path, capsys) -> None:
    cfg, url = project
    assert main(["--config", str(cfg), "gold", "add", _jsonl(tmp_path / "g.jsonl", GOOD)]) == 0
    assert "read 3 rows, added 3 gold items" in capsys.readouterr().out
    csv = tmp_path / "g.csv"
    csv.write_text(
        "prompt,response_a,response_b,expected,rationale\n"
        '"Sort [3,1]","[1,3]","[3,1]",a,\n'
        '"What is 2+2?",4,5,a,math\n',  # the first file's first pair: stored already
        encoding="utf-8",
    )
    assert main(["--config", str(cfg), "gold", "add", str(csv)]) == 0
    assert "added 1 gold items, 1 already stored" in capsys.readouterr().out
    assert main(["--config", str(cfg), "gold", "add", str(tmp_path / "g.jsonl")]) == 0  # again: no-op
    assert _gold_count(url) == 4
    capsys.readouterr()
    assert main(["--config", str(cfg), "gold", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(g["expected"], g["shown"], g["answers"]) for g in listed] == [
        ("a", 0, 0),
        ("b", 0, 0),
        ("tie", 0, 0),
        ("a", 0, 0),
    ]
    assert listed[2]["source_id"] == "7" and listed[0]["rationale"] == "math"
    assert main(["--config", str(cfg), "gold", "list"]) == 0
    assert "4 gold items" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("bad", "where", "reason"),
    [
        ("{not json\n", "line 2", "malformed JSON"),
        (json.dumps({**GOOD[0], "expected": "maybe"}) + "\n", "line 2", "unknown expected answer 'maybe'"),
        (
            json.dumps({k: v for k, v in GOOD[0].items() if k != "response_b"}) + "\n",
            "line 2",
            "'response_b'",
        ),
        (json.dumps({**GOOD[0], "response_a": "  "}) + "\n", "line 2", "missing 'response_a'"),
    ],
)
def test_a_bad_row_is_one_error_naming_file_and_row_and_nothing_is_stored(
    project, tmp_path, capsys, bad, where, reason
) -> None:
    cfg, url = project
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD[1]) + "\n" + bad + json.dumps(GOOD[2]) + "\n", encoding="utf-8")
    assert main(["--config", str(cfg), "gold", "add", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: {where}: "), err
    assert reason in err[0] and "nothing was stored" in err[0]
    assert _gold_count(url) == 0


def test_a_bad_csv_row_is_named_by_its_line(project, tmp_path, capsys) -> None:
    cfg, url = project
    csv = tmp_path / "bad.csv"
    csv.write_text("prompt,response_a,response_b,expected\nQ1,x,y,a\nQ2,x,,b\n", encoding="utf-8")
    assert main(["--config", str(cfg), "gold", "add", str(csv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {csv}: line 3: missing 'response_b'; nothing was stored"]
    assert _gold_count(url) == 0


def test_a_gold_prompt_that_is_a_pool_prompt_is_allowed_and_said_on_one_line(
    project, tmp_path, capsys
) -> None:
    cfg, url = project
    assert (
        main(["--config", str(cfg), "ingest", _jsonl(tmp_path / "pool.jsonl", [{"prompt": "Say  hi."}])]) == 0
    )
    capsys.readouterr()
    assert main(["--config", str(cfg), "gold", "add", _jsonl(tmp_path / "g.jsonl", GOOD)]) == 0
    out = capsys.readouterr()
    notes = out.err.strip().splitlines()
    assert len(notes) == 1 and "1 gold prompts are also pool prompts (line 3)" in notes[0]
    assert _gold_count(url) == 3


def test_add_gold_file_refuses_other_formats(uow, tmp_path) -> None:
    path = tmp_path / "g.parquet"
    path.write_bytes(b"")
    with pytest.raises(Exception, match="read from .jsonl or .csv"), uow() as s:
        add_gold_file(s, path)


def test_a_pair_repeated_with_another_expected_answer_is_one_error(project, tmp_path, capsys) -> None:
    """In the file, or against the database: the row is named, nothing is stored (it was silently ignored)."""
    cfg, url = project
    flipped = {**GOOD[0], "expected": "b"}
    path = _jsonl(tmp_path / "twice.jsonl", [GOOD[0], GOOD[1], flipped])
    assert main(["--config", str(cfg), "gold", "add", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: line 3: the same pair as line 1 "), err
    assert "another expected answer ('b', there 'a')" in err[0] and "nothing was stored" in err[0]
    assert _gold_count(url) == 0

    assert main(["--config", str(cfg), "gold", "add", _jsonl(tmp_path / "g.jsonl", GOOD)]) == 0
    capsys.readouterr()
    later = _jsonl(tmp_path / "later.jsonl", [{**GOOD[2], "prompt": "New one"}, flipped])
    assert main(["--config", str(cfg), "gold", "add", later]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {later}: line 2: this pair is stored already "), err
    assert "with expected answer 'a', not 'b'; nothing was stored" in err[0]
    assert _gold_count(url) == 3


def test_a_retired_gold_item_is_no_longer_placed(project, tmp_path, capsys) -> None:
    from annotation.gold import reserved_priorities
    from storage.models import GoldRecord
    from storage.statuses import RoundStatus
    from tests.support.annotation_setup import make_round_items

    cfg, url = project
    assert main(["--config", str(cfg), "gold", "add", _jsonl(tmp_path / "g.jsonl", GOOD)]) == 0
    capsys.readouterr()
    assert main(["--config", str(cfg), "gold", "retire", "1"]) == 0
    assert capsys.readouterr().out.startswith("gold item 1 retired since ")
    assert main(["--config", str(cfg), "gold", "retire", "99"]) == 2
    assert capsys.readouterr().err.startswith("error: no gold item 99 ")
    assert main(["--config", str(cfg), "gold", "list", "--json"]) == 0
    listed = {g["id"]: g["retired_at"] for g in json.loads(capsys.readouterr().out)}
    assert listed[1] is not None and listed[2] is None and listed[3] is None

    engine = make_engine(url)
    try:
        uow = UnitOfWork(engine)
        rnd = make_round_items(uow, 4, status=RoundStatus.COLLECTING)
        reserved_priorities(
            uow, rnd.round_id, 4, 3, blind=False, first_push=True
        )  # the shared dataset's gold, placed now
        with uow() as s:
            assert {r.gold_id for r in s.scalars(select(GoldRecord))} == {2, 3}
    finally:
        engine.dispose()
