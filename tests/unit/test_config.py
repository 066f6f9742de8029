"""Config validation: errors name the file, section and key, and list the allowed values or keys."""

from __future__ import annotations

import tomllib

import pytest

from loop.config import ConfigError, default_config_toml, load_config, parse_config


def _write(tmp_path, text):
    p = tmp_path / "pvar-loop.toml"
    p.write_text(text)
    return p


def test_defaults_without_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env={})
    assert cfg.generation.k == 5
    assert cfg.database_url.startswith("sqlite:///") and cfg.database_url.endswith("pvar-loop.db")


def test_default_template_round_trips(tmp_path):
    text = default_config_toml()
    parsed = tomllib.loads(text)
    assert set(parsed) >= {"generation", "reward", "selection", "argilla", "training"}
    assert load_config(_write(tmp_path, text), env={}) == parse_config({}, env={})


def test_unknown_key_lists_allowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, "[generation]\nkk = 3\n"), env={})
    msg = str(e.value)
    assert "pvar-loop.toml" in msg and "[generation] kk" in msg and "temperature" in msg


def test_bad_literal_lists_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, '[selection]\nstrategy = "best"\n'), env={})
    assert "[selection] strategy" in str(e.value) and "'pvar'" in str(e.value) and "'best'" in str(e.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[generation]\nk = 1\n", "[generation] k"),
        ('[selection]\nbudget = "ten"\n', "[selection] budget"),
        ("[selection]\nbudget = -1\n", "[selection] budget"),
        ("[generation]\ntop_p = 1.5\n", "[generation] top_p"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(_write(tmp_path, text), env={})


def test_invalid_toml_names_file(tmp_path):
    with pytest.raises(ConfigError, match="pvar-loop.toml: not valid TOML"):
        load_config(_write(tmp_path, "[generation\n"), env={})


def test_env_overrides_and_secret_not_echoed(tmp_path):
    env = {"PVAR_LOOP_DATABASE_URL": "postgresql://u:p@h/db", "PVAR_LOOP_ARGILLA_API_KEY": "s3cret-key"}
    cfg = load_config(_write(tmp_path, ""), env=env)
    assert cfg.database_url == "postgresql://u:p@h/db"
    assert cfg.argilla.api_key.get_secret_value() == "s3cret-key"
    assert "s3cret-key" not in repr(cfg)


@pytest.mark.parametrize("name", ["quick", "full"])
def test_demo_profiles_write_configs_that_load(tmp_path, name):
    from loop.config import load_config
    from loop.demo.run import PROFILES, write_config

    p = PROFILES[name]
    path = write_config(tmp_path, tmp_path / "data", tmp_path / "policy", tmp_path / "rm", p, rounds_seed=0)
    cfg = load_config(path)
    assert (cfg.selection.budget, cfg.generation.k, cfg.training.lora) == (p.budget, p.k, p.lora)
    assert cfg.policy.dtype == cfg.training.dtype == p.dtype and cfg.evaluation.judge == "verifier"
    assert cfg.reward.model == str(tmp_path / "rm")
