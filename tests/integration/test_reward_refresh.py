"""[reward] refresh = "every_round": after a round's labels are in, a candidate reward model is trained on all
decided labels (tiny real Llama, TRL RewardTrainer) and selects from the next round on only if its agreement
with the humans on held-out labels does not drop; every refresh is a row that `status --json` and the report
show, and the next round scores the pool with the model that was kept.

The labels follow a toy rule a tiny model learns (tests/integration/loop/ml/test_reward_model.py): the chosen
response contains a marker word. Round 1's candidate learns it (kept); round 2's candidate is trained on flipped
labels through the refresh's test hook, so it disagrees with the humans (rejected).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import partial
from pathlib import Path

import pytest

from loop.cli.app import main
from loop.config import load_config
from loop.rounds.reward_refresh import refresh_round
from loop.rounds.state import Services, _recorded_step, start_round, step
from loop.scoring.pool import selection_reward_model
from storage.models import AnnotationItem, Generation, Prompt, PromptScore, RewardRefresh, RewardScore, Round
from storage.repositories.checkpoints import ensure_initial_checkpoint
from storage.statuses import ItemStatus, RoundStatus
from tests.integration.loop.ml.test_reward_model import toy_pairs

pytestmark = pytest.mark.slow

N_TOY, N_FREE = 96, 8  # labelled in round 1; left in the pool for rounds 2 and 3 (budget 4 each)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def project(tmp_path, tiny_models, sqlite_url, engine):
    path = tmp_path / "pvar-loop.toml"
    path.write_text(f"""
[paths]
data_dir = "{tmp_path / "data"}"
[database]
url = "{sqlite_url}"
[policy]
model = "{tiny_models.policy_dir}"
dtype = "float32"
[generation]
k = 3
max_new_tokens = 8
batch_size = 16
[reward]
model = "{tiny_models.reward_dir}"
dtype = "float32"
max_length = 128
refresh = "every_round"
[reward_training]
learning_rate = 1e-3
epochs = 3
heldout_fraction = 0.2
refresh_min_heldout = 10
[selection]
budget = 4
""")
    return path, load_config(path, env={})


def _labelled_round(uow, cfg) -> int:
    """Round 1 in `training`: N_TOY decided items following the toy rule, plus N_FREE unlabelled prompts."""
    pairs = toy_pairs(N_TOY)
    free = [f"Free prompt {i}: describe a {w}." for i, w in enumerate(["cat", "boat", "tree", "lamp"] * 2)]
    with uow() as s:
        checkpoint = ensure_initial_checkpoint(s, cfg.policy.model)
        s.add_all(
            Prompt(id=_sha(t), text=t, source="test", split="train", meta={})
            for t in [p.prompt for p in pairs] + free
        )
        rnd = Round(
            number=1, budget=N_TOY, strategy="pvar", seed=0, policy_in=checkpoint, status=RoundStatus.TRAINING
        )
        s.add(rnd)
        s.flush()
        for i, p in enumerate(pairs):
            first, second = (p.chosen, p.rejected) if i % 2 else (p.rejected, p.chosen)  # both sides chosen
            gens = [
                Generation(prompt_id=_sha(p.prompt), checkpoint_id=checkpoint, sample_index=j, text=t)
                for j, t in enumerate((first, second))
            ]
            s.add_all(gens)
            s.flush()
            s.add(
                AnnotationItem(
                    id=_sha(f"r1/{p.prompt}"),
                    round_id=rnd.id,
                    prompt_id=_sha(p.prompt),
                    generation_a_id=gens[0].id,
                    generation_b_id=gens[1].id,
                    status=ItemStatus.DECIDED,
                    decision="a" if first == p.chosen else "b",
                )
            )
        return rnd.id


def _no_dpo(cfg, uow, round_id):
    """DPO is not under test: the policy stays, so a rescore of the pool is the reward model's doing alone."""
    return None


def _services(**changes) -> Services:
    return dataclasses.replace(Services.default(), train=_no_dpo, **changes)


def _flipped(pairs: list) -> list:
    return [dataclasses.replace(p, chosen=p.rejected, rejected=p.chosen) for p in pairs]


def _refresh(uow, round_id: int) -> RewardRefresh | None:
    with uow() as s:
        row = s.query(RewardRefresh).filter_by(round_id=round_id).one_or_none()
        if row is not None:
            s.expunge(row)
        return row


def _current(uow, cfg) -> str:
    with uow() as s:
        return selection_reward_model(s, cfg)


def _decide_and_train(uow, round_id: int) -> None:
    """The annotators answered round `round_id`: every item decided 'a'; on to training."""
    with uow() as s:
        for item in s.query(AnnotationItem).filter_by(round_id=round_id):
            item.status, item.decision = ItemStatus.DECIDED, "a"
        s.get(Round, round_id).status = RoundStatus.TRAINING


def _plan_next(uow, cfg) -> int:
    rnd, message = start_round(uow, cfg)
    assert rnd is not None, message
    assert step(uow, cfg, rnd.id, _services()) == RoundStatus.SCORED
    return rnd.id


def _scores_by_model(uow, checkpoint: str) -> dict[str, int]:
    with uow() as s:
        rows = s.query(PromptScore.reward_model).filter_by(checkpoint_id=checkpoint, metric="pvar").all()
    out: dict[str, int] = {}
    for (model,) in rows:
        out[model] = out.get(model, 0) + 1
    return out


def test_refresh_is_kept_when_agreement_holds_rejected_when_it_drops(
    project, uow, tiny_models, capsys, tmp_path
):
    path, cfg = project
    configured = str(tiny_models.reward_dir)
    round1 = _labelled_round(uow, cfg)

    # A refresh that fails mid-way records nothing: the configured model still selects, the round can re-tick.
    def crash(pairs):
        raise RuntimeError("killed mid-training")

    failing = _services(refresh_reward=partial(refresh_round, training_pairs=crash))
    with pytest.raises(RuntimeError, match="killed mid-training"):
        _recorded_step(uow, cfg, round1, failing)
    with uow() as s:
        rnd = s.get(Round, round1)
        assert rnd.status == RoundStatus.TRAINING and "killed mid-training" in rnd.reason
    assert _refresh(uow, round1) is None and _current(uow, cfg) == configured

    # Round 1, re-ticked: the candidate learns the humans' rule; it is kept and selects from now on.
    assert step(uow, cfg, round1, _services()) == RoundStatus.EVALUATED
    assert step(uow, cfg, round1, _services()) == RoundStatus.DONE
    first = _refresh(uow, round1)
    assert first is not None and first.kept, first.reason
    assert (first.n_pairs, first.n_train + first.n_heldout) == (N_TOY, N_TOY) and first.n_heldout >= 10
    assert first.previous_model == first.base_model == configured
    assert first.old_agreement <= 0.6 and first.new_agreement >= 0.9, (
        first.old_agreement,
        first.new_agreement,
    )
    candidate = first.candidate_model
    assert f"on {first.n_heldout} held-out pairs" in first.reason and "difference +" in first.reason
    assert candidate.startswith(str((tmp_path / "data" / "reward-models").resolve()))
    assert (Path(candidate) / "config.json").is_file()
    assert _current(uow, cfg) == candidate
    # Redoing the step's work does not refresh twice.
    refresh_round(cfg, uow, round1)
    with uow() as s:
        assert s.query(RewardRefresh).count() == 1
    # A crash after the candidate was written but before its row: the re-run reuses it (no second training).
    with uow() as s:
        s.query(RewardRefresh).delete()
    refresh_round(cfg, uow, round1)
    again = _refresh(uow, round1)
    assert (again.candidate_model, again.kept, again.new_agreement) == (candidate, True, first.new_agreement)
    assert len(list((tmp_path / "data" / "reward-models").iterdir())) == 1

    # Round 2 scores its candidates (the free prompts: [selection] candidates draws from those) with the kept
    # candidate RM (same policy: only the reward model changed).
    with uow() as s:
        checkpoint = s.get(Round, round1).policy_in
    round2 = _plan_next(uow, cfg)
    assert _scores_by_model(uow, checkpoint) == {candidate: N_FREE}
    with uow() as s:
        items = s.query(AnnotationItem).filter_by(round_id=round2).all()
        assert len(items) == 4 and {s.get(Prompt, i.prompt_id).text[:4] for i in items} == {"Free"}

    # Round 2's candidate learns the opposite of what the humans chose: its agreement drops, it is rejected.
    _decide_and_train(uow, round2)
    flipping = _services(refresh_reward=partial(refresh_round, training_pairs=_flipped))
    assert step(uow, cfg, round2, flipping) == RoundStatus.EVALUATED
    assert step(uow, cfg, round2, flipping) == RoundStatus.DONE
    second = _refresh(uow, round2)
    assert second is not None and not second.kept, second.reason
    assert second.previous_model == candidate and second.n_pairs == N_TOY + 4
    assert second.new_agreement < second.old_agreement, (second.old_agreement, second.new_agreement)
    assert _current(uow, cfg) == candidate

    # Round 3 still selects with round 1's candidate; the rejected one scored nothing.
    round3 = _plan_next(uow, cfg)
    with uow() as s:
        assert s.query(AnnotationItem).filter_by(round_id=round3).count() == 4
        assert not s.query(RewardScore).filter_by(reward_model=second.candidate_model).count()
    assert set(_scores_by_model(uow, checkpoint)) == {candidate}

    # status --json: one entry per round's refresh, with the figures.
    capsys.readouterr()
    assert main(["--config", str(path), "status", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["reward_refresh"]
    assert [(r["round"], r["kept"], r["n_pairs"]) for r in shown] == [(1, True, N_TOY), (2, False, N_TOY + 4)]
    assert shown[0]["new_agreement"] == pytest.approx(first.new_agreement)
    assert shown[1]["candidate_model"] == second.candidate_model
    assert main(["--config", str(path), "status"]) == 0
    text = capsys.readouterr().out
    assert f"reward model refresh after round 1: {N_TOY} decided labels" in text
    assert f"not kept, {candidate} stays" in text

    # The report: one table row per refresh, and the rows in report.json.
    assert main(["--config", str(path), "report", "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Selection reward model refreshes" in html and html.count("<td>rejected</td>") == 1
    assert html.count("<td>kept</td>") == 1
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["kept"] for r in report["reward_refresh"]] == [True, False]


def test_no_refresh_without_a_heldout_share_when_off_or_in_an_experiment_arm(uow, tmp_path, tiny_models):
    """Few labels: nothing to judge a candidate on, so none is trained, and the row says why. Off, or an
    experiment arm: no refresh at all, and selection keeps [reward] model."""
    from loop.config import parse_config
    from tests.support.annotation_setup import make_round_items

    raw = {"paths": {"data_dir": str(tmp_path / "data")}, "reward": {"model": str(tiny_models.reward_dir)}}
    on = parse_config({**raw, "reward": {**raw["reward"], "refresh": "every_round"}}, env={})
    off = parse_config(raw, env={})
    one = make_round_items(uow, 1, status=RoundStatus.TRAINING)
    _decide_and_train(uow, one.round_id)
    other = make_round_items(uow, 1, round_number=2, tag="x", status=RoundStatus.TRAINING)
    with uow() as s:
        s.get(Round, other.round_id).arm = "random-s0"
    _decide_and_train(uow, other.round_id)

    refresh_round(off, uow, one.round_id)
    refresh_round(on, uow, other.round_id)
    assert _refresh(uow, one.round_id) is None and _refresh(uow, other.round_id) is None

    refresh_round(on, uow, one.round_id)
    row = _refresh(uow, one.round_id)
    assert (row.kept, row.candidate_model, row.n_pairs, row.n_heldout, row.n_train) == (False, None, 1, 0, 0)
    assert "too few distinct prompts to hold any out" in row.reason
    assert _current(uow, on) == str(tiny_models.reward_dir)
    assert not (tmp_path / "data" / "reward-models").exists()


def test_too_few_heldout_pairs_train_no_candidate_and_say_which_key(project, uow, tmp_path):
    """Agreement on a handful of held-out pairs decides nothing (the demo once kept a model on 2 pairs,
    1.000 -> 1.000): below [reward_training] refresh_min_heldout no candidate is trained and the row says why."""
    _, cfg = project
    cfg = cfg.model_copy(
        update={"reward_training": cfg.reward_training.model_copy(update={"refresh_min_heldout": 40})}
    )
    round1 = _labelled_round(uow, cfg)
    refresh_round(cfg, uow, round1)
    row = _refresh(uow, round1)
    assert row is not None and (row.kept, row.candidate_model) == (False, None)
    assert 0 < row.n_heldout < 40 and row.n_train == 0 and row.n_pairs == N_TOY
    assert "[reward_training] refresh_min_heldout = 40" in row.reason
    assert f"only {row.n_heldout} held-out pairs" in row.reason
    assert not (tmp_path / "data" / "reward-models").exists()
    assert _current(uow, cfg) == cfg.reward.model
