"""The Ray scoring engine (`[scoring] engine = "ray"`) with tiny real models on a local 2-CPU Ray: the same rows
as the local engine for the same seeds, resume after a killed driver, and clear errors for bad settings."""

from __future__ import annotations

import json
import shutil
import signal

import pytest

from loop.scoring.pool import FAULT_ENV
from tests.integration.test_pool import DONE, _check_complete
from tests.support.scoring_project import make_project

SAMPLES = "SELECT g.prompt_id, g.sample_index, g.text, g.n_tokens FROM generations g ORDER BY g.prompt_id, g.sample_index"
REWARDS = (
    "SELECT g.prompt_id, g.sample_index, r.score FROM reward_scores r JOIN generations g ON g.id = r.generation_id "
    "ORDER BY g.prompt_id, g.sample_index"
)
SCORES = "SELECT prompt_id, metric, k, value FROM prompt_scores ORDER BY prompt_id, metric"


def _use_ray(project, **keys) -> None:
    lines = ['engine = "ray"'] + [
        f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in keys.items()
    ]
    text = project.config.read_text(encoding="utf-8") + "[scoring]\n" + "\n".join(lines) + "\n"
    project.config.write_text(text.replace("'", '"'), encoding="utf-8")


def _assert_same_rows(ray_project, local_project) -> None:
    """Same samples (exactly), rewards and scores (to float32 noise: actors run torch with fewer threads)."""
    assert ray_project.query(SAMPLES) == local_project.query(SAMPLES)
    got, want = ray_project.query(REWARDS), local_project.query(REWARDS)
    assert [r[:2] for r in got] == [r[:2] for r in want]
    assert [r[2] for r in got] == pytest.approx([r[2] for r in want], rel=1e-5, abs=1e-6)
    got, want = ray_project.query(SCORES), local_project.query(SCORES)
    assert [r[:3] for r in got] == [r[:3] for r in want]
    assert [r[3] for r in got] == pytest.approx([r[3] for r in want], rel=1e-4, abs=1e-6)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, tiny_models):
    """The local engine's rows for 10 prompts, K=3, batches of 2: what every Ray run here must reproduce."""
    project = make_project(
        tmp_path_factory.mktemp("local"),
        tiny_models.policy_dir,
        tiny_models.reward_dir,
        10,
        k=3,
        batch_size=2,
    )
    assert project.cli("score", "--no-progress") == 0
    _check_complete(project, n_prompts=10, k=3)
    return project


@pytest.mark.slow
def test_ray_engine_stores_the_local_engines_rows(
    tmp_path, tiny_models, ray_cluster, local_reference, capsys
):
    project = make_project(tmp_path, tiny_models.policy_dir, tiny_models.reward_dir, 10, k=3, batch_size=2)
    # Two actors per stage on the 2-CPU cluster: batches run in parallel and still come back as local ones.
    _use_ray(project, workers=2, cpus_per_worker=0.5)
    assert project.cli("score", "--no-progress", "--limit", "4") == 0
    assert project.count(DONE) == 4
    assert project.cli("score", "--no-progress") == 0
    _check_complete(project, n_prompts=10, k=3)
    _assert_same_rows(project, local_reference)
    # Nothing left: a third run starts no pipeline and changes nothing.
    before = project.query(SAMPLES)
    assert project.cli("score", "--no-progress") == 0
    assert project.query(SAMPLES) == before


@pytest.mark.slow
def test_killed_ray_driver_resumes_without_loss_or_duplicates(
    tmp_path, tiny_models, ray_cluster, local_reference, capsys
):
    project = make_project(tmp_path, tiny_models.policy_dir, tiny_models.reward_dir, 10, k=3, batch_size=2)
    # A separate driver process joins the session's Ray by address and is SIGKILLed inside batch 3, after its
    # rows were flushed and before the commit.
    _use_ray(project, ray_address=ray_cluster)
    proc = project.spawn("score", "--no-progress", env={FAULT_ENV: "before-commit:3"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert "fault injection: SIGKILL at before-commit of batch 3" in err
    assert project.count(DONE) == 4  # batches 1 and 2 only
    committed = project.query(
        "SELECT id, prompt_id, sample_index, text, created_at FROM generations ORDER BY id"
    )
    assert len(committed) == 4 * 3
    assert project.cli("score", "--no-progress") == 0
    after = project.query("SELECT id, prompt_id, sample_index, text, created_at FROM generations ORDER BY id")
    assert after[: len(committed)] == committed  # committed batches were not rewritten
    _check_complete(project, n_prompts=10, k=3)
    _assert_same_rows(project, local_reference)  # the resumed run drew what an uninterrupted one draws


@pytest.mark.slow
def test_actors_that_do_not_fit_the_cluster_are_refused_naming_the_keys(
    tmp_path, tiny_models, ray_cluster, capsys
):
    project = make_project(tmp_path, tiny_models.policy_dir, tiny_models.reward_dir, 2, k=2, batch_size=2)
    _use_ray(project, workers=2)  # 2 generation + 2 reward actors x 1 CPU on a 2-CPU Ray
    capsys.readouterr()
    assert project.cli("score", "--no-progress") != 0
    err = capsys.readouterr().err
    assert "[scoring] workers = 2" in err and "needs 4 CPU" in err and "the Ray cluster has 2" in err
    assert project.count("SELECT COUNT(*) FROM generations") == 0


@pytest.mark.slow
def test_ray_engine_reuses_stored_samples_for_another_reward_model(
    tmp_path, tiny_models, ray_cluster, capsys
):
    # The same reward weights under another path: another reward model id, so every prompt is unscored for it
    # while its samples for the checkpoint are stored already (what a reward-model refresh meets).
    project = make_project(tmp_path, tiny_models.policy_dir, tiny_models.reward_dir, 10, k=3, batch_size=2)
    assert project.cli("score", "--no-progress") == 0
    samples = project.query(
        "SELECT id, prompt_id, sample_index, text, created_at FROM generations ORDER BY id"
    )
    other_rm = tmp_path / "other-rm"
    shutil.copytree(tiny_models.reward_dir, other_rm)
    text = project.config.read_text(encoding="utf-8").replace(str(tiny_models.reward_dir), str(other_rm))
    project.config.write_text(text, encoding="utf-8")
    _use_ray(project)
    capsys.readouterr()
    assert project.cli("score", "--no-progress", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scored"] + len(report["excluded"]) == 10 and report["tokens_generated"] == 0
    assert (
        project.query("SELECT id, prompt_id, sample_index, text, created_at FROM generations ORDER BY id")
        == samples
    )
    by_rm = dict(project.query("SELECT reward_model, COUNT(*) FROM reward_scores GROUP BY reward_model"))
    assert by_rm[str(other_rm)] == by_rm[str(tiny_models.reward_dir)] > 0  # same weights, same valid samples
    pvars = project.query(
        "SELECT reward_model, prompt_id, value FROM prompt_scores WHERE metric = 'pvar' ORDER BY prompt_id"
    )
    mine = [(p, v) for rm, p, v in pvars if rm == str(other_rm)]
    theirs = [(p, v) for rm, p, v in pvars if rm == str(tiny_models.reward_dir)]
    assert [p for p, _ in mine] == [p for p, _ in theirs]
    assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], rel=1e-4, abs=1e-6)
