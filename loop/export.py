"""`pvar-loop export`: the decided preference pairs as a TRL-ready dataset file."""

from __future__ import annotations

from pathlib import Path

from loop.rounds.training import TrainingDataError
from storage.repositories.items import decided_items


def export_preferences(session, out: Path, *, include_cancelled: bool = False) -> int:
    """Write decided pairs as a TRL-ready conversational preference dataset (.jsonl or .parquet); the pairs
    of cancelled/failed rounds only with `include_cancelled`."""
    pairs = decided_items(session, include_cancelled=include_cancelled)
    rows = [
        {
            "prompt": [{"role": "user", "content": p.prompt}],
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
            "round_id": p.round_id,
            "prompt_id": p.prompt_id,
        }
        for p in pairs
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp)
    elif out.suffix in (".jsonl", ".json"):
        import json

        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        raise TrainingDataError(f"{out}: use a .jsonl or .parquet file name")
    tmp.replace(out)
    return len(rows)
