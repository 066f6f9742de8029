"""Per-annotator reliability through the real Argilla stack: three bot annotators (careful: follows a judge;
always-A: picks the side shown as A; fast-random: a coin, all at once) answer a blind-overlap round with gold
items mixed in; pull stores when each answer was given; `annotators list --json` and `status` flag the
always-A annotator's position bias, the fast ones' pace and the random one's gold accuracy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation.simulated.bot import AnnotatorBot
from annotation.simulated.judges import RewardJudge
from loop.cli.app import main
from storage.models import Label
from storage.repositories.gold import gold_answers
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator_in, fresh_workspace, unique

pytestmark = pytest.mark.argilla
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ITEMS = 12
GOLD = 8
QUALITY = {
    "min_gold_accuracy": 0.9,
    "max_position_bias": 0.2,
    "min_seconds_per_answer": 0.4,
    "min_answers": 10,
    "min_gold_answers": 5,
}


def _config(tmp_path, monkeypatch, sqlite_url: str, stack: ArgillaTarget, workspace: str, dataset: str):
    config = tmp_path / "pvar-loop.toml"
    quality = "".join(f"{k} = {v}\n" for k, v in QUALITY.items())
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[argilla]\nworkspace = "{workspace}"\ndataset = "{dataset}"\nmin_submitted = 3\n'
        f"gold_per_round = {GOLD}\n\n"
        f"[quality]\n{quality}"
    )
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", stack.api_key)
    return ["--config", str(config)]


def _label(stack: ArgillaTarget, key: str, name: str, judge, batch_size: int) -> None:
    with AnnotatorBot(stack.url, key, judge) as bot:
        # The shared dataset (nothing of theirs there with blind overlap) and their own.
        done = sum(bot.run(d, batch_size=batch_size).submitted for d in bot.dataset_ids(name))
    assert done == ITEMS + GOLD


def test_three_bots_position_bias_pace_and_gold_accuracy_flagged(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    workspace = fresh_workspace(argilla_stack)
    careful, always_a, rand = (
        annotator_in(argilla_stack, workspace, p) for p in ("careful", "always-a", "rand")
    )
    name = unique("ds-quality")
    cli = _config(tmp_path, monkeypatch, sqlite_url, argilla_stack, workspace, name)
    items = make_round_items(uow, ITEMS, status=RoundStatus.COLLECTING, tag="quality ")
    gold_rows = [
        {
            "prompt": f"quality Question 9.{k}: explain topic {k} briefly.",
            "response_a": f"gold good {k}" if k % 2 == 0 else f"gold bad {k}",
            "response_b": f"gold bad {k}" if k % 2 == 0 else f"gold good {k}",
            "expected": "a" if k % 2 == 0 else "b",
        }
        for k in range(GOLD)
    ]
    gold_file = tmp_path / "gold.jsonl"
    gold_file.write_text("".join(json.dumps(r) + "\n" for r in gold_rows))
    assert main([*cli, "gold", "add", str(gold_file)]) == 0
    assert main([*cli, "push", "--round", "1"]) == 0

    reward = {items.best[i]: 1.0 for i in items.item_ids} | {items.worst[i]: 0.0 for i in items.item_ids}
    reward |= {f"gold good {k}": 1.0 for k in range(GOLD)} | {f"gold bad {k}": 0.0 for k in range(GOLD)}

    def judge(prompt: str, a: str, b: str) -> str:
        time.sleep(0.5)  # reads both responses; one answer per request
        return RewardJudge(lambda _p, r: reward[r], temperature=0.01)(prompt, a, b)

    _label(argilla_stack, careful.api_key, name, judge, batch_size=1)
    _label(argilla_stack, always_a.api_key, name, lambda _p, _a, _b: "a", batch_size=100)
    _label(argilla_stack, rand.api_key, name, RewardJudge(lambda _p, _r: 0.0, seed=7), batch_size=100)
    assert main([*cli, "pull"]) == 0
    with uow() as s:  # pull stored when each answer was first given (Argilla's inserted_at)
        assert None not in set(s.scalars(select(Label.answered_at)))
    capsys.readouterr()

    assert main([*cli, "annotators", "list", "--json"]) == 0
    listed = {r["username"]: r for r in json.loads(capsys.readouterr().out)}
    fig = {who.username: listed[who.username]["reliability"] for who in (careful, always_a, rand)}
    a = fig[always_a.username]
    shown = ITEMS + GOLD  # position bias counts gold answers too
    assert (a["answers"], a["ab_answers"], a["shown_a"], a["position_bias"]) == (shown, shown, shown, 1.0)
    assert any(f"position bias: chose the side shown as A in 100% of {shown}" in f for f in a["flags"])
    c = fig[careful.username]
    # Careful picks the better response wherever it is shown: its shown-A share follows the random swap.
    with uow() as s:
        careful_gold = [g for g in gold_answers(s) if g.annotator == careful.username]
    assert c["shown_a"] == sum(not items.swapped[i] for i in items.item_ids) + sum(
        (g.answer == "a") != g.shown_swapped for g in careful_gold
    )
    assert c["flags"] == [] and c["seconds_per_answer"] >= 0.5 and c["timed_gaps"] == ITEMS + GOLD - 1
    assert c["tie_rate"] == 0 and c["discard_rate"] == 0
    assert set(c["kappa"]) == {always_a.username, rand.username}
    assert c["kappa"][always_a.username]["items"] == ITEMS
    r = fig[rand.username]
    assert sorted(f.split()[0].rstrip(":") for f in r["flags"]) == ["gold", "pace"]  # all in one request
    assert r["seconds_per_answer"] < 0.4  # what Argilla takes per response of a bulk request
    assert [x["round"] for x in listed[careful.username]["rounds"]] == ["main/1"]

    assert main([*cli, "annotators", "list"]) == 0
    table = capsys.readouterr().out
    ARTIFACTS.mkdir(exist_ok=True)  # the scenario's output, for whoever reviews it
    (ARTIFACTS / "annotator_reliability.txt").write_text(f"$ pvar-loop annotators list\n{table}")
    warned = [
        line for line in table.splitlines() if line.startswith(f"warning: annotator {always_a.username} ")
    ]
    assert len(warned) == 1 and "flagged (still counted): " in warned[0] and "position bias" in warned[0]
    assert f"warning: annotator {careful.username}" not in table
    assert "Krippendorff's alpha per round (a/b/tie): main/1 " in table

    assert main([*cli, "status"]) == 0
    status = capsys.readouterr().out
    with (ARTIFACTS / "annotator_reliability.txt").open("a") as f:
        f.write(f"\n$ pvar-loop status\n{status}")
    lines = status.splitlines()
    mine = [
        line
        for line in lines
        if careful.username in line or always_a.username in line or rand.username in line
    ]

    def gold_part(f: dict) -> str:
        low, high = f["gold_interval"]
        return f"gold {f['gold_accuracy']:.2f} [{low:.2f}-{high:.2f}] ({f['gold_answers']})"

    assert [line for line in mine if line.startswith("  annotator ")] == [
        f"  annotator {who.username}: {ITEMS} submitted, 0 discarded; {gold_part(fig[who.username])}, majority "
        + (
            "-"
            if fig[who.username]["majority_agreement"] is None
            else f"{fig[who.username]['majority_agreement']:.2f}"
        )
        + f" ({fig[who.username]['majority_items']}), shown A {fig[who.username]['position_bias']:.2f} ({shown}), "
        f"ties 0%, discards 0%, {fig[who.username]['seconds_per_answer']:.1f} s/answer"
        for who in sorted((careful, always_a, rand), key=lambda p: p.username)
    ]
    warnings = [line for line in mine if line.startswith("warning: ")]
    assert sorted(w.split(" flagged")[0] for w in warnings) == sorted(
        f"warning: annotator {who.username}" for who in (always_a, rand)
    )

    # Gold: the bots answered the gold records mixed into the round like any item.
    g = fig[careful.username]
    assert (g["gold_answers"], g["gold_correct"]) == (GOLD, GOLD)
    assert not any(f.startswith("gold") for f in g["flags"])
    r = fig[rand.username]
    assert r["gold_answers"] == GOLD and r["gold_interval"][1] < QUALITY["min_gold_accuracy"]
    assert any(
        f.startswith(f"gold accuracy {r['gold_accuracy']:.2f} ({r['gold_correct']} of {GOLD}")
        for f in r["flags"]
    )


def test_human_evaluation_answers_count_in_the_figures_of_the_round_whose_checkpoint_they_judge(uow) -> None:
    """Issue 23 s6: a human evaluation's answers count in the round that trained the checkpoint: position bias
    (the side swap undone), tie and discard rates. Not in agreement, kappa or alpha: the evaluation dataset is
    shared, so each annotator could read the others' verdicts (no Argilla needed)."""
    from sqlalchemy import update

    from loop.config import QualityConfig
    from loop.quality.inputs import annotator_reliability
    from storage.models import Checkpoint, Prompt
    from storage.repositories.checkpoints import ensure_checkpoint, ensure_initial_checkpoint
    from storage.repositories.eval_comparisons import add_comparisons
    from tests.support.annotation_setup import prompt_id

    rnd = make_round_items(uow, 1, status=RoundStatus.EVALUATING, tag="heval ")
    texts = [f"heval prompt {i}" for i in range(4)]
    with uow() as s:
        reference = ensure_initial_checkpoint(s, "initial-policy")
        ensure_checkpoint(s, "heval-policy", "trained")
        s.execute(update(Checkpoint).where(Checkpoint.id == "heval-policy").values(round_id=rnd.round_id))
        s.add_all(Prompt(id=prompt_id(t), text=t, source="test", split="eval", meta={}) for t in texts)
        s.flush()
        add_comparisons(
            s,
            [
                {
                    "id": f"heval-{i}",
                    "checkpoint_id": "heval-policy",
                    "reference_id": reference,
                    "prompt_id": prompt_id(t),
                    "policy_text": f"policy answer {i}",
                    "reference_text": f"reference answer {i}",
                    "policy_side": "ab"[i % 2],  # the checkpoint's shown as A, then as B
                    "min_submitted": 2,
                    "answers": {"alice": "policy", "bob": "reference"},
                }
                for i, t in enumerate(texts)
            ],
        )
    with uow() as s:
        rel = annotator_reliability(s, QualityConfig(min_answers=1))
    alice, bob = rel["annotators"]["alice"], rel["annotators"]["bob"]
    assert (alice["answers"], alice["ab_answers"], alice["shown_a"]) == (
        4,
        4,
        2,
    )  # swap undone: half shown as A
    assert (bob["answers"], bob["shown_a"]) == (4, 2)
    assert alice["tie_rate"] == 0.0 and alice["discard_rate"] == 0.0
    assert alice["majority_agreement"] is None and alice["majority_items"] == 0
    assert alice["kappa"] == {} and bob["kappa"] == {}
    [round_figures] = rel["rounds"]
    assert round_figures["round_id"] == rnd.round_id and round_figures["alpha"] is None
