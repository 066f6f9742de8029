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
    session,
    out: Path,
    *,
    include_cancelled: bool = False,
    include_ties: bool = False,
    include_late: bool = False,
) -> int:
    """Write decided pairs as a TRL-ready conversational preference dataset (.jsonl or .parquet); the pairs
    of cancelled/failed rounds only with `include_cancelled`, ties only with `include_ties`; with
    `include_late` each row also lists the late answers (given or changed after its round closed)."""
    if out.suffix not in (".jsonl", ".json", ".parquet"):
        raise TrainingDataError(f"{out}: use a .jsonl or .parquet file name")
    pairs = exported_pairs(
        session, include_cancelled=include_cancelled, include_ties=include_ties, include_late=include_late
    )
    rows = [export_row(p, include_late=include_late) for p in pairs]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=_parquet_schema(include_late)), tmp)
    else:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    return len(rows)


def export_row(p: ExportPair, *, include_late: bool = False) -> dict[str, Any]:
    """One pair: TRL's columns, then per annotator (same order) their answer relative to chosen/rejected and
    their rationale (None when they gave none), as the decision used them; `late_*` the same for the late
    answers with `include_late`."""
    first_is_chosen = p.decision != Choice.B  # a tie keeps our order: a (the higher reward) first
    chosen, rejected = (p.text_a, p.text_b) if first_is_chosen else (p.text_b, p.text_a)
    side = (
        {Choice.A: "chosen", Choice.B: "rejected"}
        if first_is_chosen
        else {Choice.A: "rejected", Choice.B: "chosen"}
    )
    row = {
        "prompt": [{"role": "user", "content": p.prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "decision": TIE if p.decision == Choice.TIE else PREFERRED,
        "annotators": [lb.annotator for lb in p.labels],
        "choices": [side.get(lb.choice, str(lb.choice)) for lb in p.labels],  # chosen|rejected|tie|discard
        "rationales": [lb.rationale for lb in p.labels],
        # True: the annotator was excluded (`annotators exclude`): answer kept, not counted in the decision
        "excluded": [lb.excluded for lb in p.labels],
        "decision_method": p.decision_method,  # majority | dawid-skene
        "confidence": p.confidence,  # posterior probability of the decision (majority: its share of votes)
        "round": p.round_number,
        "arm": p.arm,
        "round_id": p.round_id,
        "prompt_id": p.prompt_id,
        "source_id": p.source_id,
        # A JSON object as text: its keys differ per file, and a string column concatenates across exports.
        "prompt_metadata": json.dumps(p.prompt_metadata, ensure_ascii=False, sort_keys=True),
    }
    if include_late:
        row["late_annotators"] = [lb.annotator for lb in p.late]
        row["late_choices"] = [side.get(lb.choice, str(lb.choice)) for lb in p.late]
        row["late_rationales"] = [lb.rationale for lb in p.late]
    return row


def _parquet_schema(include_late: bool = False):
    """Every column typed, whatever the rows hold: inferred from rows, a column that is null in every row
    (rationales nobody gave, source ids nobody set) is typed null and clashes with the next export's. The
    `late_*` columns only with `include_late`."""
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
            ("excluded", pa.list_(pa.bool_())),
            ("decision_method", pa.string()),
            ("confidence", pa.float64()),
            ("round", pa.int64()),
            ("arm", pa.string()),
            ("round_id", pa.int64()),
            ("prompt_id", pa.string()),
            ("source_id", pa.string()),
            ("prompt_metadata", pa.string()),
        ]
        + (
            [(f"late_{name}", pa.list_(pa.string())) for name in ("annotators", "choices", "rationales")]
            if include_late
            else []
        )
    )
