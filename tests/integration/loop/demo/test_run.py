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


def _world_failing_once(ready: str):
    """A prepare_world that waits until the demo's stack has written `ready` under its directory, then fails."""
    import time

    from loop.demo.run import DemoError

    def broken_world(data_dir, *args, **kwargs):
        deadline = time.monotonic() + 60
        while not (data_dir / "argilla" / ready).exists():
            assert time.monotonic() < deadline, "no Argilla stack started while the world was prepared"
            time.sleep(0.05)
        raise DemoError("the world could not be prepared")

    return broken_world


def test_an_error_while_the_world_is_prepared_stops_the_stack_starting_beside_it(tmp_path, monkeypatch):
    """The demo starts its Argilla stack while it prepares the world: a failure there (here, after the stack is
    up) ends the demo with that error and no Argilla process left running."""
    import pytest

    from annotation.stack.local_stack import stack_status
    from loop.demo import run as demo

    monkeypatch.setattr(demo, "prepare_world", _world_failing_once("stack.json"))  # its processes recorded
    with pytest.raises(demo.DemoError, match="could not be prepared"):
        demo.run_demo(tmp_path / "demo", model_cache=tmp_path / "cache")
    status = stack_status(tmp_path / "demo" / "argilla")
    assert status.processes and status.state == "stopped", status


def _processes_of(root) -> list[int]:
    """PIDs of live processes started for the stack under `root` (every stack process gets its home in env)."""
    from pathlib import Path

    mark = f"ARGILLA_HOME_PATH={root / 'home'}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if mark in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_an_error_before_the_stack_is_up_cancels_its_start_and_leaves_no_process(tmp_path, monkeypatch):
    """The world fails at once, while the stack is still starting: the demo cancels the start, waits for it to
    stop what it started, and ends with the world's error."""
    import pytest

    from loop.demo import run as demo

    monkeypatch.setattr(demo, "prepare_world", _world_failing_once("logs"))  # the stack has begun
    with pytest.raises(demo.DemoError, match="could not be prepared"):
        demo.run_demo(tmp_path / "demo", model_cache=tmp_path / "cache")
    assert _processes_of(tmp_path / "demo" / "argilla") == []
    assert not (tmp_path / "demo" / "argilla" / "stack.json").exists()  # it never came up
