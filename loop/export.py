"""`pvar-loop export`: the decided preference pairs as a TRL-ready dataset file.

TRL reads prompt/chosen/rejected (conversational); the other columns keep what the labels say about each
pair (who answered, why, which round, where the prompt came from) and are ignored by its trainers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loop.rounds.training import TrainingDataError
from storage.repositories.exports import ExportPair, exported_pairs
from storage.statuses import Choice

TRL_COLUMNS = ("prompt", "chosen", "rejected")
# `decision` of a row: the annotators preferred `chosen`, or judged both equally good (`--include-ties`;
# then chosen/rejected are just the two responses and must not be trained on as a preference).
PREFERRED, TIE = "preferred", "tie"


def export_preferences(
    session, out: Path, *, include_cancelled: bool = False, include_ties: bool = False
) -> int:
    """Write decided pairs as a TRL-ready conversational preference dataset (.jsonl or .parquet); the pairs
    of cancelled/failed rounds only with `include_cancelled`, ties only with `include_ties`."""
    if out.suffix not in (".jsonl", ".json", ".parquet"):
        raise TrainingDataError(f"{out}: use a .jsonl or .parquet file name")
    rows = [
        export_row(p)
        for p in exported_pairs(session, include_cancelled=include_cancelled, include_ties=include_ties)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=_parquet_schema()), tmp)
    else:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    return len(rows)


def export_row(p: ExportPair) -> dict[str, Any]:
    """One pair: TRL's columns, then per annotator (same order) their answer relative to chosen/rejected and
    their rationale (None when they gave none)."""
    first_is_chosen = p.decision != Choice.B  # a tie keeps our order: a (the higher reward) first
    chosen, rejected = (p.text_a, p.text_b) if first_is_chosen else (p.text_b, p.text_a)
    side = (
        {Choice.A: "chosen", Choice.B: "rejected"}
        if first_is_chosen
        else {Choice.A: "rejected", Choice.B: "chosen"}
    )
    return {
        "prompt": [{"role": "user", "content": p.prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "decision": TIE if p.decision == Choice.TIE else PREFERRED,
        "annotators": [lb.annotator for lb in p.labels],
        "choices": [side.get(lb.choice, str(lb.choice)) for lb in p.labels],  # chosen|rejected|tie|discard
        "rationales": [lb.rationale for lb in p.labels],
        "round": p.round_number,
        "arm": p.arm,
        "round_id": p.round_id,
        "prompt_id": p.prompt_id,
        "source_id": p.source_id,
        # A JSON object as text: its keys differ per file, and a string column concatenates across exports.
        "prompt_metadata": json.dumps(p.prompt_metadata, ensure_ascii=False, sort_keys=True),
    }


def _parquet_schema():
    """Every column typed, whatever the rows hold: inferred from rows, a column that is null in every row
    (rationales nobody gave, source ids nobody set) is typed null and clashes with the next export's."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("prompt", pa.list_(message)),
            ("chosen", pa.list_(message)),
            ("rejected", pa.list_(message)),
            ("decision", pa.string()),
            ("annotators", pa.list_(pa.string())),
            ("choices", pa.list_(pa.string())),
            ("rationales", pa.list_(pa.string())),
            ("round", pa.int64()),
            ("arm", pa.string()),
            ("round_id", pa.int64()),
            ("prompt_id", pa.string()),
            ("source_id", pa.string()),
            ("prompt_metadata", pa.string()),
        ]
    )
