"""Issue 14 point 12: the demo keeps the models its config points at in --model-cache, in both profiles, so the
next demo (which empties its data dir) never deletes a model a user's config may point at."""

from __future__ import annotations

from loop.cli.app import main
from loop.config import load_config
from loop.demo.run import QUICK, prepare_world


def test_quick_demo_models_live_in_the_model_cache_and_survive_the_next_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache, data = tmp_path / "cache", tmp_path / "demo"
    said = []
    world = prepare_world(data, QUICK, cache, say=said.append)
    cfg = load_config(world.config)
    policy, reward = cfg.policy.model, cfg.reward.model
    # Issue 26: the demo says where its models are (and which config points at them).
    assert f"[demo] models: policy {policy}, selection reward model {reward} (config {world.config})" in said
    for path in (policy, reward):
        assert path.startswith(str(cache.resolve())), path  # not under the data dir the next demo empties
    stamp = {p: (tmp_path / p).stat().st_mtime_ns for p in (policy, reward)}

    (data / "user-notes.txt").write_text("written by the previous demo run's user")
    again = prepare_world(data, QUICK, cache, say=lambda _: None)
    assert not (data / "user-notes.txt").exists()  # the data dir was emptied for the new run
    cfg = load_config(again.config)
    assert (cfg.policy.model, cfg.reward.model) == (policy, reward)
    assert {p: (tmp_path / p).stat().st_mtime_ns for p in (policy, reward)} == stamp  # kept, not rebuilt


def test_a_model_cache_inside_the_data_dir_is_refused(tmp_path, capsys):
    data = tmp_path / "demo"
    code = main(["demo", "--quick", "--data-dir", str(data), "--model-cache", str(data / "models")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--model-cache" in err and "inside --data-dir" in err
    assert not data.exists()  # refused before anything was written
