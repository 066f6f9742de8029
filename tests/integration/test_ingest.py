"""Ingest of every format, every bad-input case with its message, and nothing written on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from loop.ingest import IngestError, ingest_file, prompt_id, write_reject_report
from storage.db import UnitOfWork, make_engine
from storage.migrate import upgrade
from storage.models import Prompt

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request) -> str:
    """A migrated database on each backend (text PostgreSQL refuses, e.g. NUL, must never reach it)."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def any_uow(db_url):
    engine = make_engine(db_url)
    yield UnitOfWork(engine)
    engine.dispose()


ROWS = [
    {"prompt": "Write a haiku about rain.", "id": "r1", "metadata": {"topic": "rain"}},
    {"prompt": "Explain DPO in one sentence.", "id": 2},
    {"prompt": "Name three primes."},
]


def _count(uow) -> int:
    with uow() as s:
        return s.scalar(select(func.count()).select_from(Prompt))


def _ingest(uow, path, **kw):
    with uow() as s:
        return ingest_file(s, path, **kw)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_and_reingest_adds_nothing(uow, tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", ROWS)
    report = _ingest(uow, path)
    assert (report.read, report.inserted) == (3, 3)
    with uow() as s:
        p = s.get(Prompt, prompt_id("Write a haiku about rain."))
        assert p.meta == {"topic": "rain"} and p.source_id == "r1" and p.split == "train"
    again = _ingest(uow, path)
    assert (again.inserted, again.already_present) == (0, 3)
    assert _count(uow) == 3


def test_duplicates_after_normalisation(uow, tmp_path):
    path = _jsonl(
        tmp_path / "d.jsonl", [{"prompt": "Same  prompt "}, {"prompt": " Same prompt"}, {"prompt": "x"}]
    )
    report = _ingest(uow, path)
    assert (report.inserted, report.duplicates_in_file) == (2, 1)


def test_csv_with_metadata_column(uow, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt,id,metadata,lang\n"Hi, there",7,"{""a"": 1}",en\nSecond,,,fr\n', encoding="utf-8")
    report = _ingest(uow, path, split="eval")
    assert report.inserted == 2
    with uow() as s:
        p = s.get(Prompt, prompt_id("Hi, there"))
        assert p.meta == {"a": 1, "lang": "en"} and p.split == "eval" and p.source_id == "7"


def test_parquet(uow, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": [r["prompt"] for r in ROWS], "id": ["a", "b", "c"]}), path)
    assert _ingest(uow, path).inserted == 3


def test_saved_datasets_dir(uow, tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"prompt": ["a", "b"]}),
            "eval": datasets.Dataset.from_dict({"prompt": ["c"]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "ds"))
    assert _ingest(uow, tmp_path / "ds", split="eval").inserted == 1
    with pytest.raises(IngestError, match="splits"):
        datasets.DatasetDict({"other": dd["eval"]}).save_to_disk(str(tmp_path / "ds2"))
        _ingest(uow, tmp_path / "ds2")


BAD_JSONL = [
    (b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n', "line 2: invalid UTF-8"),
    (b'{"prompt": "ok"}\n{"prompt": \n', "line 2: malformed JSON"),
    (b'{"prompt": "ok"}\n{"id": 1}\n', "line 2: missing 'prompt'"),
    (b'{"prompt": "ok"}\n{"prompt": "   "}\n', "line 2: empty 'prompt'"),
    (b'{"prompt": "ok"}\n{"prompt": ["a"]}\n', "line 2: 'prompt' must be a string, got list"),
    (b'{"prompt": "ok"}\n{"prompt": "a", "metadata": 3}\n', "line 2: 'metadata' must be an object"),
    (b'{"prompt": "ok"}\n[1, 2]\n', "line 2: expected a JSON object"),
    (b'{"prompt": "ok"}\n{"prompt": "' + b"x" * 101 + b'"}\n', "line 2: prompt has 101 characters"),
]


@pytest.mark.parametrize(("content", "message"), BAD_JSONL)
def test_bad_jsonl_names_line_and_writes_nothing(uow, tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(IngestError) as e:
        _ingest(uow, path, max_chars=100)
    assert f"bad.jsonl: {message}" in str(e.value) and "nothing was written" in str(e.value)
    assert _count(uow) == 0


def test_bad_csv_utf8_and_missing_column(uow, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"prompt\nok\ncaf\xe9\n")
    with pytest.raises(IngestError, match=r"bad.csv: line 3: invalid UTF-8"):
        _ingest(uow, path)
    path.write_bytes(b"text\nok\n")
    with pytest.raises(IngestError, match="no 'prompt' column"):
        _ingest(uow, path)
    assert _count(uow) == 0


def test_unreadable_and_unknown_files(uow, tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        _ingest(uow, tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(IngestError, match="unknown file type"):
        _ingest(uow, tmp_path / "x.txt")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(IngestError, match="not a readable Parquet"):
        _ingest(uow, tmp_path / "broken.parquet")


def test_failure_after_a_full_batch_rolls_back(uow, tmp_path):
    rows = [{"prompt": f"prompt {i}"} for i in range(12000)] + [{"prompt": ""}]
    with pytest.raises(IngestError, match="line 12001: empty"):
        _ingest(uow, _jsonl(tmp_path / "big.jsonl", rows))
    assert _count(uow) == 0


def test_skip_invalid_writes_valid_rows_and_report(uow, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b'{"prompt": "good one"}\n{"prompt": 5, "id": "q7", "team": "x"}\n{"prompt": "good two"}\n{"prompt": \n'
    )
    report = _ingest(uow, path, skip_invalid=True)
    assert report.inserted == 2 and len(report.rejects) == 2
    out = write_reject_report(report, tmp_path / "rejects")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    # Each reject keeps the row itself and its id, so it can be fixed and ingested again.
    assert lines == [
        {
            "file": str(path),
            "where": "line 2",
            "reason": "'prompt' must be a string, got int",
            "id": "q7",
            "row": {"prompt": 5, "id": "q7", "team": "x"},
        },
        {
            "file": str(path),
            "where": "line 4",
            "reason": "malformed JSON: Expecting value (column 1)",
            "id": None,
            "row": '{"prompt": ',
        },
    ]
    assert _count(uow) == 2


def test_skip_invalid_csv_reject_keeps_the_row_and_its_id(uow, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("prompt,id,team\ngood,1,x\n,2,y\n", encoding="utf-8")
    report = _ingest(uow, path, skip_invalid=True)
    [line] = [json.loads(x) for x in write_reject_report(report, tmp_path / "r").read_text().splitlines()]
    assert (line["where"], line["id"], line["row"]) == ("line 3", "2", {"prompt": "", "id": "2", "team": "y"})


# Rows that are valid JSON/CSV but not text a prompt (or PostgreSQL) can hold: each is rejected per row, with its
# line named, before anything reaches the database; the rows around it are fine.
UNSTORABLE = [
    pytest.param("jsonl", b'{"prompt": "a\\u0000b"}', "line 2: 'prompt' contains a NUL character", id="nul"),
    pytest.param(
        "jsonl",
        b'{"prompt": "x", "metadata": {"k": "v\\u0000"}}',
        "line 2: 'metadata' contains a NUL character",
        id="nul-in-metadata",
    ),
    pytest.param("jsonl", b'{"prompt": "a", "id": "\\u0000"}', "line 2: 'id' contains a NUL", id="nul-in-id"),
    pytest.param(
        "jsonl", b'{"prompt": "a\\ud800b"}', "line 2: 'prompt' contains a lone surrogate", id="surrogate"
    ),
    pytest.param(
        "jsonl",
        b'{"prompt": "x", "metadata": {"\\udfff": 1}}',
        "line 2: 'metadata' contains a lone surrogate",
        id="surrogate-in-metadata-key",
    ),
    pytest.param(
        "jsonl",
        '{"prompt": "\u200b\u200d \ufeff\u2060\u3164"}'.encode(),
        "line 2: 'prompt' has no visible characters",
        id="zero-width-only",
    ),
    pytest.param("csv", b"a\x00b", "line 2: 'prompt' contains a NUL character", id="csv-nul"),
    pytest.param(
        "csv",
        b'"never closed\nswallowed one\nswallowed two',
        "line 2: unterminated quoted field",
        id="csv-unterminated-quote-at-eof",
    ),
]


def _file_around(tmp_path, fmt: str, bad: bytes):
    """(file, the good prompts in it): the bad row on line 2 (after the CSV header), good rows around it."""
    if fmt == "jsonl":
        path = tmp_path / "bad.jsonl"
        path.write_bytes(b'{"prompt": "first good"}\n' + bad + b'\n{"prompt": "last good"}\n')
        return path, {"first good", "last good"}
    path = tmp_path / "bad.csv"
    path.write_bytes(b"prompt\n" + bad + b"\nlast good\n")
    # an unterminated quote swallows the rest of the file: nothing after it is a row
    return path, set() if bad.startswith(b'"') else {"last good"}


def _texts(uow) -> set[str]:
    with uow() as s:
        return set(s.scalars(select(Prompt.text)))


@pytest.mark.parametrize(("fmt", "bad", "message"), UNSTORABLE)
def test_unstorable_text_is_rejected_per_row_on_every_backend(any_uow, tmp_path, fmt, bad, message):
    path, good = _file_around(tmp_path, fmt, bad)
    with pytest.raises(IngestError) as e:
        _ingest(any_uow, path)
    assert f"{path.name}: {message}" in str(e.value) and "nothing was written" in str(e.value)
    assert _texts(any_uow) == set()
    report = _ingest(any_uow, path, skip_invalid=True)
    assert [r.where for r in report.rejects] == ["line 2"]
    assert _texts(any_uow) == good and report.inserted == len(good)


def test_csv_quote_closed_rows_later_rejects_the_swallowed_rows(any_uow, tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b'prompt,id\nfirst,1\n"broken,2\nswallowed,3\n"quoted" tail,4\nlast,5\n')
    with pytest.raises(IngestError, match=r"q.csv: line 3: malformed CSV.*lines 3-5"):
        _ingest(any_uow, path)
    report = _ingest(any_uow, path, skip_invalid=True)
    assert [r.where for r in report.rejects] == ["line 3"]
    assert _texts(any_uow) == {"first", "last"}


def test_multiline_quoted_csv_field_is_one_prompt(uow, tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b'prompt,id\n"two\nlines",1\nnext,2\n')
    assert _ingest(uow, path).inserted == 2
    assert _texts(uow) == {"two\nlines", "next"}


def test_same_id_with_different_text_warns_and_keeps_both(uow, tmp_path):
    rows = [{"prompt": "A", "id": "q1"}, {"prompt": "A", "id": "q1"}, {"prompt": "B", "id": "q1"}]
    report = _ingest(uow, _jsonl(tmp_path / "ids.jsonl", rows))
    assert (report.inserted, report.duplicates_in_file) == (2, 1)
    assert report.warnings == ["line 3: id 'q1' was already used by an earlier row for a different prompt"]


def _cli(*args, cwd, db_url):
    return subprocess.run(
        [sys.executable, "-m", "loop.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PVAR_LOOP_DATABASE_URL": db_url, "PVAR_LOOP_DATA_DIR": str(cwd / "data")},
        timeout=120,
    )


def test_cli_rejects_nul_and_surrogate_with_one_line_and_skip_invalid_skips(db_url, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"prompt": "good"}\n{"prompt": "a\\u0000"}\n{"prompt": "\\ud800"}\n')
    r = _cli("ingest", "p.jsonl", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "p.jsonl: line 2: 'prompt' contains a NUL character" in r.stderr
    assert "p.jsonl: line 3: 'prompt' contains a lone surrogate" in r.stderr
    r = _cli("ingest", "p.jsonl", "--skip-invalid", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "added 1" in r.stdout and "rejected 2 invalid rows" in r.stdout
    [one] = tmp_path.joinpath("data", "rejects").iterdir()
    assert [json.loads(x)["where"] for x in one.read_text().splitlines()] == ["line 2", "line 3"]
    path.write_bytes(b'{"prompt": "\\u0000"}\n')
    r = _cli("ingest", "p.jsonl", cwd=tmp_path, db_url=db_url)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr  # one reject: one line


def test_cli_warns_about_a_reused_id(tmp_path, sqlite_url):
    engine = make_engine(sqlite_url)
    upgrade(engine)
    engine.dispose()
    _jsonl(tmp_path / "p.jsonl", [{"prompt": "A", "id": 7}, {"prompt": "B", "id": 7}])
    r = _cli("ingest", "p.jsonl", cwd=tmp_path, db_url=sqlite_url)
    assert r.returncode == 0 and "added 2" in r.stdout
    assert (
        "warning: p.jsonl: line 2: id '7' was already used by an earlier row for a different prompt"
        in r.stderr
    )
