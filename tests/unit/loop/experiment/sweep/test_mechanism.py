"""The mechanism tables: gradient norm per label (ties 0) and per decided pair, paired by seed, and
Spearman(PVar, norm) over the pool with an interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.experiment.sweep.mechanism import analyse_mechanism, markdown_lines, read_rows, write_rows
from loop.experiment.sweep.table import SweepTableError


def _pick(strategy: str, seed: int, decided: int, norm: float, i: int) -> dict:
    return {"kind": "pick", "cell": f"{strategy}.rm.s{seed}.b4", "rm": "rm", "seed": seed, "strategy": strategy,
            "budget": 4, "prompt": f"p{i}", "pvar": 0.1, "decided": decided, "grad_norm": norm}  # fmt: skip


def test_ties_count_as_zero_per_label_and_are_left_out_per_decided_pair() -> None:
    rows = []
    for s in range(3):
        # pvar: 3 decided pairs of norm 2 and a tie; random: 1 decided pair of norm 2 and 3 ties
        rows += [_pick("pvar", s, 1, 2.0, i) for i in range(3)] + [_pick("pvar", s, 0, 0.0, 3)]
        rows += [_pick("random", s, 1, 2.0, 0)] + [_pick("random", s, 0, 0.0, i) for i in range(1, 4)]
    m = analyse_mechanism(rows, n_boot=50)
    by = {p["strategy"]: p for p in m["picks"]}
    assert by["pvar"]["per_label"]["mean"] == pytest.approx(1.5)
    assert by["random"]["per_label"]["mean"] == pytest.approx(0.5)
    assert by["pvar"]["per_decided"]["mean"] == by["random"]["per_decided"]["mean"] == pytest.approx(2.0)
    (d,) = m["differences"]
    assert d["per_label"]["mean"] == pytest.approx(1.0) and d["per_decided"]["mean"] == pytest.approx(0.0)
    text = "\n".join(markdown_lines(m))
    assert "| rm | pvar | 4 | 3 | 1.5000 [1.5000, 1.5000] | 2.0000 [2.0000, 2.0000] |" in text


def test_spearman_over_the_pool_has_a_bootstrap_interval() -> None:
    pool = [
        {
            "kind": "pool",
            "cell": "",
            "rm": "rm",
            "seed": 0,
            "strategy": "",
            "budget": 0,
            "prompt": f"q{i}",
            "pvar": i / 100,
            "decided": 1,
            "grad_norm": (i % 7) + i / 10,
        }
        for i in range(30)
    ]
    (s,) = analyse_mechanism(pool, n_boot=200)["spearman"]
    assert s["n"] == 30 and s["low"] <= s["rho"] <= s["high"] and 0 < s["rho"] < 1
    monotone = [{**r, "grad_norm": r["pvar"] * 3} for r in pool]
    (s,) = analyse_mechanism(monotone, n_boot=200)["spearman"]
    assert s["rho"] == pytest.approx(1.0) and s["low"] == pytest.approx(1.0)


def test_rows_round_trip_and_a_bad_file_names_its_line(tmp_path: Path) -> None:
    rows = [{**_pick("pvar", 0, 1, 2.5, 0), "pvar": repr(0.1), "grad_norm": repr(2.5)}]
    path = write_rows(tmp_path / "m.csv", rows)
    assert read_rows(path) == [{**_pick("pvar", 0, 1, 2.5, 0), "seed": 0, "budget": 4}]
    path.write_text(path.read_text().replace("2.5", "x"))
    with pytest.raises(SweepTableError, match=r"m.csv:2: "):
        read_rows(path)
