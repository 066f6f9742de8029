"""Ingest of every format, every bad-input case with its message, and nothing written on failure."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from loop.ingest import IngestError, ingest_file, prompt_id, write_reject_report
from storage.models import Prompt

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
    path.write_bytes(b'{"prompt": "good one"}\n{"prompt": 5}\n{"prompt": "good two"}\n')
    report = _ingest(uow, path, skip_invalid=True)
    assert report.inserted == 2 and len(report.rejects) == 1
    out = write_reject_report(report, tmp_path / "rejects")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines == [{"file": str(path), "where": "line 2", "reason": "'prompt' must be a string, got int"}]
    assert _count(uow) == 2
