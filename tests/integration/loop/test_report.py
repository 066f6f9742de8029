"""`pvar-loop report` on a hand-built database (two arms, two rounds each): every plot is a real PNG, the
page shows the plots and the rounds, report.json holds exactly the numbers inserted; an empty database still
gives a valid page."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation.aggregate import agreement, decide
from loop.cli.app import main
from loop.report.build import build_report
from storage.models import (
    AnnotationItem,
    Checkpoint,
    Evaluation,
    Generation,
    Label,
    Prompt,
    PromptScore,
    Round,
)
from storage.statuses import PRODUCTION_ARM
from tests.support.labels import add_decided_labels

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOT_FILES = (
    "eval_vs_labels.png",
    "pvar_distribution.png",
    "label_agreement.png",
    "budget_use.png",
    "annotator_reliability.png",
)
RM, OTHER_RM, JUDGE, REFERENCE = "rm-small", "rm-other", "verifier", "init"
ANNOTATORS = ("ann-1", "ann-2", "ann-3")
N_PROMPTS = 10

# Pool PVar per input policy (prompt i has value POOLS[ckpt][i]).
POOLS = {
    "init": [0.001 * (i + 1) ** 2 for i in range(N_PROMPTS)],
    "pvar-1": [0.02 + 0.01 * ((i * 7) % N_PROMPTS) for i in range(N_PROMPTS)],
    "random-1": [0.005 * (i + 1) for i in range(N_PROMPTS)],
}
# (arm, number, strategy, policy_in, policy_out, selected prompt indices, votes per selected item)
ROUNDS = [
    ("pvar", 1, "pvar", "init", "pvar-1", [9, 8, 7], [("a", "a", "a"), ("a", "a", "b"), ("a", "b", "tie")]),
    (
        "pvar",
        2,
        "pvar",
        "pvar-1",
        "pvar-2",
        [1, 8, 5],
        [("b", "b", "b"), ("a", "a", "a"), ("tie", "tie", "a")],
    ),
    (
        "random",
        1,
        "random",
        "init",
        "random-1",
        [2, 5, 0],
        [("a", "b", "b"), ("a", "a", "discard"), ("b", "a", "tie")],
    ),
    (
        "random",
        2,
        "random",
        "random-1",
        "random-2",
        [4, 6, 3],
        [("a", "a", "a"), ("b", "b", "a"), ("a", "a", "tie")],
    ),
]
# checkpoint -> (win rate, ci low, ci high) vs REFERENCE under JUDGE
EVALS = {
    "init": (0.5, 0.4, 0.6),
    "pvar-1": (0.60, 0.52, 0.68),
    "pvar-2": (0.71, 0.64, 0.78),
    "random-1": (0.53, 0.45, 0.61),
    "random-2": (0.55, 0.47, 0.62),
}
# Mean judge scores with their CI (evaluations since evaluation_samples); the others predate them.
SCORES = {"pvar-1": {"policy_mean": 0.41, "policy_ci_low": 0.35, "policy_ci_high": 0.47}}
REASON = "budget <b>cut</b> & resumed"  # must reach the page escaped


def _populate(uow) -> None:
    with uow() as s:
        prompts = [
            Prompt(id=f"p{i}", text=f"prompt {i}", source="test", split="train") for i in range(N_PROMPTS)
        ]
        s.add_all(prompts)
        s.add(Prompt(id="e0", text="eval prompt", source="test", split="eval"))
        for ckpt in ("init", "pvar-1", "pvar-2", "random-1", "random-2"):
            s.add(Checkpoint(id=ckpt, path=f"/models/{ckpt}", base_id=None if ckpt == "init" else "init"))
        s.flush()
        for ckpt, values in POOLS.items():
            for i, v in enumerate(values):
                s.add(
                    PromptScore(
                        prompt_id=f"p{i}", checkpoint_id=ckpt, reward_model=RM, metric="pvar", k=4, value=v
                    )
                )
                s.add(
                    PromptScore(
                        prompt_id=f"p{i}",
                        checkpoint_id=ckpt,
                        reward_model=RM,
                        metric="reward_gap",
                        k=4,
                        value=9.0,
                    )
                )
        # A second reward model that scored a few prompts: the pool must stay the one of the main model.
        for i in range(3):
            s.add(
                PromptScore(
                    prompt_id=f"p{i}",
                    checkpoint_id="init",
                    reward_model=OTHER_RM,
                    metric="pvar",
                    k=4,
                    value=0.2,
                )
            )
        for arm, number, strategy, p_in, p_out, picks, votes in ROUNDS:
            rnd = Round(
                arm=arm,
                number=number,
                status="done",
                reason=REASON if (arm, number) == ("random", 2) else None,
                budget=4,
                strategy=strategy,
                policy_in=p_in,
                policy_out=p_out,
            )
            s.add(rnd)
            s.flush()
            for idx, item_votes in zip(picks, votes, strict=True):
                # Unique per (prompt, checkpoint, sample): arms starting from one policy share them.
                gens = s.scalars(
                    select(Generation)
                    .where(Generation.prompt_id == f"p{idx}", Generation.checkpoint_id == p_in)
                    .order_by(Generation.sample_index)
                ).all()
                if not gens:
                    gens = [
                        Generation(prompt_id=f"p{idx}", checkpoint_id=p_in, sample_index=k, text=f"r{k}")
                        for k in (0, 1)
                    ]
                    s.add_all(gens)
                    s.flush()
                d = decide(item_votes)
                item = AnnotationItem(
                    id=f"{arm}-{number}-p{idx}",
                    round_id=rnd.id,
                    prompt_id=f"p{idx}",
                    generation_a_id=gens[0].id,
                    generation_b_id=gens[1].id,
                    status=d.status,
                    decision=d.choice,
                    votes=d.votes,
                )
                s.add(item)
                s.flush()
                add_decided_labels(
                    s,
                    (
                        Label(item_id=item.id, annotator=who, choice=choice)
                        for who, choice in zip(ANNOTATORS, item_votes, strict=True)
                    ),
                )
        for ckpt, (wr, lo, hi) in EVALS.items():
            s.add(
                Evaluation(
                    checkpoint_id=ckpt,
                    reference_id=REFERENCE,
                    judge=JUDGE,
                    n_prompts=40,
                    win_rate=wr,
                    ci_low=lo,
                    ci_high=hi,
                    details=SCORES.get(ckpt, {}),
                )
            )
        # One evaluation with another judge: listed, not mixed into the curves.
        s.add(
            Evaluation(
                checkpoint_id="pvar-2",
                reference_id=REFERENCE,
                judge="rm-judge",
                n_prompts=40,
                win_rate=0.9,
                ci_low=0.8,
                ci_high=0.95,
            )
        )


class _Page(HTMLParser):
    """Image sources and table rows (cell texts) of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).replace("\xa0", " ").strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _page(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    return text, parser


@pytest.fixture
def report(uow, tmp_path):
    _populate(uow)
    with uow() as s:
        files = build_report(s, tmp_path / "report")
    return files


def test_every_plot_is_a_real_png_and_on_the_page(report):
    assert sorted(p.name for p in report.plots.values()) == sorted(PLOT_FILES)
    for path in report.plots.values():
        blob = path.read_bytes()
        assert blob.startswith(PNG_MAGIC) and len(blob) > 5_000, path
    html, page = _page(report.index)
    assert sorted(page.images) == sorted(PLOT_FILES)
    assert html.startswith("<!doctype html>") and "<script" not in html
    assert sorted(f.name for f in report.index.parent.iterdir()) == sorted(
        [*PLOT_FILES, "index.html", "report.json"]
    )


def test_rounds_table_rows(report):
    html, page = _page(report.index)
    rows = {(r[0], r[1]): r for r in page.rows if len(r) == 17 and r[0] in ("pvar", "random")}
    assert set(rows) == {(arm, str(n)) for arm, n, *_ in ROUNDS}
    for arm, number, strategy, p_in, p_out, _picks, votes in ROUNDS:
        row = rows[(arm, str(number))]
        decisions = [decide(v) for v in votes]
        assert row[3] == strategy and row[4] == "4" and row[5] == "3"
        # Issue 26: one vocabulary; "decided" is an a/b majority (a DPO pair), ties are counted apart.
        assert row[6] == str(sum(d.status == "decided" and d.choice != "tie" for d in decisions))
        assert row[7] == str(sum(d.choice == "tie" for d in decisions))
        assert row[8] == str(sum(d.status == "undecided" for d in decisions))
        assert row[9] == "9" and row[14] == p_in and row[15] == p_out
        assert row[12] == row[13] == "-"  # rounds written without a scoring step: no draw, no cost
        assert row[16].startswith(f"{EVALS[p_out][0]:.3f} [")
    header = next(r for r in page.rows if "budget" in r)
    assert "answers" in header and "labels" not in header and "decided = items with an a/b majority" in html
    assert rows[("pvar", "1")][16].endswith("n=40; mean score 0.410 [0.350, 0.470]")
    assert rows[("pvar", "2")][16].endswith("n=40")  # an evaluation without a mean score shows none
    # Database text is escaped: the reason shows as text, not as markup.
    assert rows[("random", "2")][2] == f"done ({REASON})"
    assert "&lt;b&gt;cut&lt;/b&gt; &amp; resumed" in html and "<b>cut</b>" not in html


def test_report_json_holds_the_inserted_numbers(report):
    data = json.loads(report.data.read_text())
    assert data["plots"] == dict(
        zip(("eval", "pvar", "agreement", "budget", "annotators"), PLOT_FILES, strict=True)
    )
    assert data["total_labels"] == 3 * 3 * len(ROUNDS)
    assert data["arms"] == {"pvar": "pvar", "random": "random"}
    rounds = {(r["arm"], r["number"]): r for r in data["rounds"]}
    cum: dict[str, int] = {}
    for arm, number, _strategy, p_in, p_out, picks, votes in ROUNDS:
        r = rounds[(arm, number)]
        agr = agreement(votes)
        cum[arm] = cum.get(arm, 0) + 9
        assert r["labels"] == 9 and r["annotators"] == 3 and r["cum_labels"] == cum[arm]
        assert r["pairwise_agreement"] == pytest.approx(agr.pairwise)
        assert r["fleiss_kappa"] == (None if agr.fleiss_kappa is None else pytest.approx(agr.fleiss_kappa))
        resolved = [decide(v) for v in votes]
        assert r["tie_share"] == pytest.approx(sum(d.choice == "tie" for d in resolved) / 3)
        assert r["undecided_share"] == pytest.approx(sum(d.status == "undecided" for d in resolved) / 3)
        wr, lo, hi = EVALS[p_out]
        assert (r["eval"]["win_rate"], r["eval"]["ci_low"], r["eval"]["ci_high"]) == (wr, lo, hi)
        assert r["eval"]["judge"] == JUDGE
        score = SCORES.get(p_out, {})
        assert (r["eval"]["score_mean"], r["eval"]["score_low"], r["eval"]["score_high"]) == (
            score.get("policy_mean"),
            score.get("policy_ci_low"),
            score.get("policy_ci_high"),
        )
        pool = data["pools"][r["pvar"]["pool"]]
        assert pool["reward_model"] == RM and pool["checkpoint_id"] == p_in
        assert pool["values"] == sorted(POOLS[p_in])
        assert r["pvar"]["selected"] == sorted(POOLS[p_in][i] for i in picks)
    # The PVar arm's first round took the top 3 of 10: mid-rank percentiles 95, 85, 75.
    assert rounds[("pvar", 1)]["pvar"]["selected_percentile"] == pytest.approx(85.0)
    # Curves: the starting policy at 0 labels, then one point per round; the other judge is listed apart.
    curve = data["curves"]["pvar"]
    assert [(p["labels"], p["eval"]["win_rate"]) for p in curve] == [(0, 0.5), (9, 0.60), (18, 0.71)]
    assert data["other_eval_pairs"] == [[REFERENCE, "rm-judge"]]
    verdict = data["verdict"]
    # Round 1: 0.60 [0.52, 0.68] overlaps random's [0.45, 0.61]; round 2: 0.64 > 0.62, ahead.
    assert [r["outcome"] for r in verdict["by_round"]] == ["overlap", "ahead"]
    assert verdict["status"] == "ahead" and verdict["first_ahead"] == {"round": 2, "labels": 18}


def test_annotators_table_and_figures(report):
    """Per-annotator reliability, cumulative over the four rounds (no A/B swap here: shown A = answered a)."""
    figures = json.loads(report.data.read_text())["annotators"]
    first, third = figures["annotators"]["ann-1"], figures["annotators"]["ann-3"]
    # ann-1 answered a a a | b a tie | a a b | a b a: 8 of 11 a/b answers chose A, one tie.
    assert (first["shown_a"], first["ab_answers"], first["tie_rate"]) == (8, 11, pytest.approx(1 / 12))
    # Others' plurality on 6 items (both others agree, or one other discarded); ann-1 gave it on 5.
    assert (first["majority_items"], first["majority_agreement"]) == (6, pytest.approx(5 / 6))
    assert (third["shown_a"], third["ab_answers"], third["discard_rate"]) == (5, 8, pytest.approx(1 / 12))
    assert first["flags"] == [] and figures["thresholds"]["min_answers"] == 20  # too few answers to flag
    assert [r["round"] for r in figures["rounds"]] == ["pvar/1", "pvar/2", "random/1", "random/2"]
    _html, page = _page(report.index)
    rows = {r[0]: r for r in page.rows if r and r[0] in ANNOTATORS}
    assert rows["ann-1"][1:5] == ["12", "–", "0.83 n=6", "0.73 [0.43, 0.90] n=11"]
    assert "annotator_reliability.png" in page.images


def test_empty_database_gives_a_valid_page(uow, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "pvar_distribution.png").write_bytes(PNG_MAGIC)  # left over from an earlier report
    with uow() as s:
        files = build_report(s, out)
    html, page = _page(files.index)
    assert files.plots == {} and page.images == [] and "<img" not in html
    assert "No rounds yet" in html and html.rstrip().endswith("</html>")
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "report.json"]
    data = json.loads(files.data.read_text())
    assert data["rounds"] == [] and data["curves"] == {} and data["verdict"]["status"] == "no-rounds"


def test_round_without_labels_or_evals_draws_only_budget(uow, tmp_path):
    with uow() as s:
        s.add(Round(arm=PRODUCTION_ARM, number=1, status="planned", budget=8, strategy="pvar"))
    with uow() as s:
        files = build_report(s, tmp_path / "r")
    html, page = _page(files.index)
    assert page.images == ["budget_use.png"]
    assert "No evaluations of the rounds" in html and "No labels yet." in html
    assert json.loads(files.data.read_text())["verdict"]["status"] == "no-evals"


def test_single_production_arm_reports_where_it_stands(uow, tmp_path):
    with uow() as s:
        s.add_all([Checkpoint(id="init", path="/m"), Checkpoint(id="main-1", path="/m1")])
        s.flush()
        s.add(
            Round(
                arm=PRODUCTION_ARM,
                number=1,
                status="done",
                budget=8,
                strategy="pvar",
                policy_in="init",
                policy_out="main-1",
            )
        )
        s.add(
            Evaluation(
                checkpoint_id="main-1",
                reference_id="init",
                judge=JUDGE,
                n_prompts=50,
                win_rate=0.58,
                ci_low=0.49,
                ci_high=0.67,
            )
        )
    with uow() as s:
        files = build_report(s, tmp_path / "r")
    verdict = json.loads(files.data.read_text())["verdict"]
    assert verdict["status"] == "no-comparison" and verdict["latest"] == {
        "main": {"labels": 0, "win_rate": 0.58}
    }
    html, page = _page(files.index)
    assert "arm &#x27;main&#x27; (pvar): 0.580 [0.490, 0.670] after 0 answers" in html
    assert sorted(page.images) == ["budget_use.png", "eval_vs_labels.png"]


def test_cli_report_prints_the_page(uow, sqlite_url, tmp_path, monkeypatch, capsys):
    _populate(uow)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_DATA_DIR", str(tmp_path / "data"))
    capsys.readouterr()
    assert main(["report"]) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index == (tmp_path / "data" / "report" / "index.html").resolve() and index.is_file()
    assert main(["report", "--out", str(tmp_path / "elsewhere")]) == 0
    assert Path(capsys.readouterr().out.strip()) == (tmp_path / "elsewhere" / "index.html").resolve()
