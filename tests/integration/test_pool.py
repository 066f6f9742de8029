"""`pvar-loop score` with tiny real models: stored rows and values, exclusions, and resume after SIGKILL."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections import Counter

import numpy as np
import pytest

from loop.acquisition.pvar import preference_variance, reward_gap
from loop.scoring.pool import FAULT_ENV
from tests.support.scoring_project import make_project

GENERATIONS = "SELECT id, prompt_id, sample_index, text, n_tokens, created_at FROM generations ORDER BY id"
DONE = "SELECT COUNT(*) FROM prompt_scores WHERE metric IN ('pvar', 'excluded')"


def _score_json(project, capsys, *args: str) -> dict:
    capsys.readouterr()
    assert project.cli("score", "--no-progress", "--json", *args) == 0
    return json.loads(capsys.readouterr().out)


def _check_complete(project, n_prompts: int, k: int) -> None:
    """One outcome per prompt, K samples each, no duplicates, values consistent with stored rewards."""
    per_prompt = project.query("SELECT prompt_id, COUNT(*) FROM generations GROUP BY prompt_id")
    assert len(per_prompt) == n_prompts and {c for _, c in per_prompt} == {k}
    keys = project.query("SELECT prompt_id, sample_index FROM generations")
    assert len(keys) == len(set(keys)) == n_prompts * k
    outcomes = Counter(
        p
        for (p,) in project.query("SELECT prompt_id FROM prompt_scores WHERE metric IN ('pvar', 'excluded')")
    )
    assert len(outcomes) == n_prompts and set(outcomes.values()) == {1}
    rewards: dict[str, list[float]] = {}
    for prompt_id, score in project.query(
        "SELECT g.prompt_id, r.score FROM reward_scores r JOIN generations g ON g.id = r.generation_id "
        "ORDER BY g.prompt_id, g.sample_index"
    ):
        rewards.setdefault(prompt_id, []).append(score)
    stored = {
        (p, m): (kk, v)
        for p, m, kk, v in project.query("SELECT prompt_id, metric, k, value FROM prompt_scores")
    }
    pvar_prompts = [p for (p, m) in stored if m == "pvar"]
    assert pvar_prompts, "the tiny policy should give most prompts two or more non-blank responses"
    expected_pvar = preference_variance([np.array(rewards[p]) for p in pvar_prompts])
    expected_gap = reward_gap([np.array(rewards[p]) for p in pvar_prompts])
    for p, pv, gap in zip(pvar_prompts, expected_pvar, expected_gap, strict=True):
        k_used, value = stored[(p, "pvar")]
        assert k_used == len(rewards[p]) >= 2
        assert value == pytest.approx(pv, rel=1e-12, abs=1e-300)
        assert stored[(p, "reward_gap")] == (k_used, pytest.approx(gap, rel=1e-12))
    assert all(np.isfinite(v) for _, v in stored.values())


def test_score_stores_samples_rewards_and_pvar(tmp_path, tiny_models, capsys):
    project = make_project(tmp_path, tiny_models.policy_dir, tiny_models.reward_dir, 12, k=3, batch_size=4)

    first = _score_json(project, capsys, "--limit", "5")
    assert first["scored"] + len(first["excluded"]) == 5 and first["remaining"] == 7
    assert first["reward_model"] == str(tiny_models.reward_dir)
    assert first["tokens_generated"] > 0 and first["tokens_per_s"] > 0
    assert project.count(DONE) == 5

    second = _score_json(project, capsys)
    assert second["scored"] + len(second["excluded"]) == 7 and second["remaining"] == 0
    _check_complete(project, n_prompts=12, k=3)
    # A checkpoint row for the initial policy exists and every sample belongs to it.
    (ckpt,) = project.query("SELECT id FROM checkpoints")
    assert project.count("SELECT COUNT(*) FROM generations WHERE checkpoint_id != ?", ckpt[0]) == 0

    before = project.query(GENERATIONS)
    third = _score_json(project, capsys)
    assert (third["scored"], third["excluded"], third["batches"], third["remaining"]) == (0, [], 0, 0)
    assert project.query(GENERATIONS) == before


def test_prompts_with_fewer_than_two_responses_are_reported_not_nan(tmp_path, tiny_models, capsys):
    # A real policy that can only ever emit EOS: every response is blank, so no prompt can be compared.
    mute = tmp_path / "mute-policy"
    shutil.copytree(tiny_models.policy_dir, mute)
    gen_cfg = json.loads((mute / "generation_config.json").read_text())
    vocab = json.loads((mute / "config.json").read_text())["vocab_size"]
    gen_cfg["suppress_tokens"] = [i for i in range(vocab) if i != gen_cfg["eos_token_id"]]
    (mute / "generation_config.json").write_text(json.dumps(gen_cfg))
    project = make_project(tmp_path / "p", mute, tiny_models.reward_dir, 4, k=3, batch_size=4)

    capsys.readouterr()
    assert project.cli("score", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "scored 0 prompts" in out and "excluded 4 prompts with fewer than 2 valid responses" in out
    assert out.count("0 valid responses of 3 needed >= 2 (0 missing, 3 blank") == 4
    assert project.count("SELECT COUNT(*) FROM prompt_scores WHERE metric = 'pvar'") == 0
    assert project.query("SELECT DISTINCT k, value FROM prompt_scores WHERE metric = 'excluded'") == [
        (3, 0.0)
    ]
    assert project.count("SELECT COUNT(*) FROM generations WHERE text = ''") == 12
    assert project.count("SELECT COUNT(*) FROM reward_scores") == 0
    # Recorded as done: a rerun does not sample them again.
    again = _score_json(project, capsys)
    assert (again["scored"], again["excluded"], again["batches"]) == (0, [], 0)
    assert project.count("SELECT COUNT(*) FROM generations") == 12


def _snapshot_then_resume(project, capsys, n_prompts: int, k: int) -> None:
    """After a kill: resume, and check nothing committed was redone or rewritten and nothing is missing."""
    done = project.count(DONE)
    committed = project.query(GENERATIONS)
    assert len(committed) == done * k  # no half-written batch survived the kill
    resumed = _score_json(project, capsys)
    assert resumed["scored"] + len(resumed["excluded"]) == n_prompts - done
    after = project.query(GENERATIONS)
    assert after[: len(committed)] == committed  # same ids, texts and created_at: not rewritten
    _check_complete(project, n_prompts=n_prompts, k=k)


def test_sigkill_mid_run_then_resume(tmp_path, tiny_models, capsys):
    n, k, batch = 20, 3, 2
    project = make_project(tmp_path, tiny_models.policy_dir, tiny_models.reward_dir, n, k=k, batch_size=batch)
    proc = project.spawn("score", "--no-progress")
    deadline = time.monotonic() + 300
    try:
        while project.count(DONE) < 2 * batch:
            assert proc.poll() is None, f"scorer exited early: {proc.communicate()}"
            assert time.monotonic() < deadline, "scorer committed no 2 batches in 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert 2 * batch <= project.count(DONE) < n, "killed too late to test a resume"
    _snapshot_then_resume(project, capsys, n, k)


def test_kill_between_write_and_commit_loses_only_that_batch(tmp_path, tiny_models, capsys):
    n, k, batch, point = 8, 3, 2, "before-commit"
    project = make_project(tmp_path, tiny_models.policy_dir, tiny_models.reward_dir, n, k=k, batch_size=batch)
    # SIGKILL inside batch 2 after all its rows were written (flushed) but before the commit.
    proc = project.spawn("score", "--no-progress", env={FAULT_ENV: f"{point}:2"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert f"fault injection: SIGKILL at {point} of batch 2" in err
    assert project.count(DONE) == batch  # batch 1 only
    _snapshot_then_resume(project, capsys, n, k)
