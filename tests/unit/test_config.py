"""Config validation: errors name the file, section and key, and list the allowed values or keys."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import tomllib
from pathlib import Path

import pytest

from loop.config import (
    DPO_LOSS_TYPES,
    Config,
    ConfigError,
    TrainingConfig,
    default_config_toml,
    load_config,
    parse_config,
)
from loop.demo.seed_reward_model import SampleSettings
from loop.ml.settings import RewardTrainSettings, TrainingSettings


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
    defaults_here = {"paths": {"data_dir": str(tmp_path / ".pvar-loop")}}  # relative to the config file
    assert load_config(_write(tmp_path, text), env={}) == parse_config(defaults_here, env={})


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
        ("[selection]\naudit_fraction = 1.0\n", "[selection] audit_fraction"),
        ("[selection]\naudit_fraction = -0.1\n", "[selection] audit_fraction"),
        ('[selection]\naudit_fraction = "10%"\n', "[selection] audit_fraction"),
        ("[evaluation]\nsamples_per_prompt = 0\n", "[evaluation] samples_per_prompt"),
        ("[selection]\ncandidates = -1\n", "[selection] candidates"),
        ('[selection]\ncandidates = "all"\n', "[selection] candidates"),
        ("[selection]\ncandidates = 2.5\n", "[selection] candidates"),
        ("[selection]\ncandidates = true\n", "[selection] candidates"),
        ('[reward]\nrefresh = "always"\n', "[reward] refresh"),
        ("[reward]\nrefresh = true\n", "[reward] refresh"),
        ("[reward_training]\nrefresh_min_heldout = 0\n", "[reward_training] refresh_min_heldout"),
        ('[scoring]\nengine = "spark"\n', "[scoring] engine"),
        ("[scoring]\nworkers = 0\n", "[scoring] workers"),
        ("[scoring]\ncpus_per_worker = 0\n", "[scoring] cpus_per_worker"),
        ("[scoring]\nbatch_size = 0\n", "[scoring] batch_size"),
        ("[scoring]\nray_address = 6379\n", "[scoring] ray_address"),
        ('[scoring]\nengine = "ray"\nworkers = 2\nlocal_cpus = 2\n', "[scoring] workers = 2"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(_write(tmp_path, text), env={})


def test_candidates_default_to_twenty_per_label_and_zero_means_the_whole_pool(tmp_path):
    cfg = load_config(_write(tmp_path, "[selection]\nbudget = 64\n"), env={})
    assert cfg.selection.candidates == "auto" and cfg.selection.candidate_count(64) == 20 * 64
    assert cfg.selection.candidate_count(3) == 60  # follows the round's own budget (`budget set`)
    whole = load_config(_write(tmp_path, "[selection]\ncandidates = 0\n"), env={})
    assert whole.selection.candidate_count(64) is None
    fixed = load_config(_write(tmp_path, "[selection]\ncandidates = 500\n"), env={})
    assert fixed.selection.candidate_count(64) == 500
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, "[selection]\ncandidates = -5\n"), env={})
    assert '[selection] candidates: must be "auto" or an integer >= 0' in str(e.value) and "-5" in str(
        e.value
    )


def test_reward_refresh_defaults_off_and_needs_a_heldout_share(tmp_path):
    assert load_config(_write(tmp_path, ""), env={}).reward.refresh == "off"
    cfg = load_config(_write(tmp_path, '[reward]\nrefresh = "every_round"\n'), env={})
    assert cfg.reward.refresh == "every_round"
    with pytest.raises(ConfigError) as e:
        text = '[reward]\nrefresh = "every_round"\n[reward_training]\nheldout_fraction = 0.0\n'
        load_config(_write(tmp_path, text), env={})
    assert "pvar-loop.toml" in str(e.value) and "[reward] refresh" in str(e.value)
    assert "[reward_training] heldout_fraction > 0" in str(e.value)
    with pytest.raises(ConfigError, match=r"\[reward\] refresh.*'off' or 'every_round'"):
        load_config(_write(tmp_path, '[reward]\nrefresh = "on"\n'), env={})


def test_invalid_toml_names_file(tmp_path):
    with pytest.raises(ConfigError, match="pvar-loop.toml: not valid TOML"):
        load_config(_write(tmp_path, "[generation\n"), env={})


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    path = _write(tmp_path / "project", '[paths]\ndata_dir = "data"\n')
    cfg = load_config(Path("../project/pvar-loop.toml"), env={})
    assert cfg.paths.data_dir == tmp_path / "project" / "data"
    assert cfg.database_url == f"sqlite:///{tmp_path / 'project' / 'data' / 'pvar-loop.db'}"
    # the default data dir of a config file sits next to it too; an absolute one is kept as it is
    assert load_config(_write(tmp_path / "project", ""), env={}).paths.data_dir == path.parent / ".pvar-loop"
    _write(tmp_path / "project", f'[paths]\ndata_dir = "{tmp_path / "abs"}"\n')
    assert load_config(path, env={}).paths.data_dir == tmp_path / "abs"
    # the environment's value is the shell's: relative to the working directory, as before
    assert load_config(path, env={"PVAR_LOOP_DATA_DIR": "envdata"}).paths.data_dir == Path("envdata")
    # a bad value is still reported by validation, naming the key
    _write(tmp_path / "project", "[paths]\ndata_dir = 3\n")
    with pytest.raises(ConfigError, match=r"\[paths\] data_dir"):
        load_config(path, env={})


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
    assert cfg.evaluation.samples_per_prompt == p.eval_samples == 2  # the demo stays fast
    assert cfg.reward.model == str(tmp_path / "rm")
    assert cfg.reward.refresh == "every_round"  # the demo's selection RM learns from its annotators


# --- one source of truth: help text on every key, the ml settings mirror the config ---------------------------

SECTIONS = {name: field.annotation for name, field in Config.model_fields.items()}


def test_every_key_has_help_text():
    missing = [
        f"[{s}] {k}"
        for s, model in SECTIONS.items()
        for k, f in model.model_fields.items()
        if not f.description
    ]
    assert not missing


def test_init_template_comments_every_key():
    """`pvar-loop init` writes default_config_toml: each key line comes right after its help text."""
    lines = default_config_toml().splitlines()
    section, seen = None, set()
    for i, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key = line.removeprefix("# ").partition(" = ")[0] if " = " in line else None
        if key and section and key in SECTIONS[section].model_fields:
            assert lines[i - 1] == f"# {SECTIONS[section].model_fields[key].description}", line
            seen.add((section, key))
    assert seen == {(s, k) for s, model in SECTIONS.items() for k in model.model_fields}


def _mirrored(settings_cls) -> dict[str, object]:
    """field -> the default of the config key it mirrors."""
    out = {}
    for f in dataclasses.fields(settings_cls):
        section, key = f.metadata["config"]
        out[f.name] = section.model_fields[key].default
    return out


@pytest.mark.parametrize("settings_cls", [TrainingSettings, RewardTrainSettings, SampleSettings])
def test_ml_settings_defaults_are_the_config_defaults(settings_cls):
    defaults = dataclasses.asdict(settings_cls())
    assert defaults == _mirrored(settings_cls)


def test_training_settings_are_the_training_section():
    dpo_keys = {f.name for f in dataclasses.fields(TrainingSettings)}
    loop_keys = {"cumulative", "warm_start", "launcher", "accelerate_config", "num_processes"}
    assert dpo_keys == set(TrainingConfig.model_fields) - loop_keys
    assert all(f.metadata["config"] == (TrainingConfig, f.name) for f in dataclasses.fields(TrainingSettings))
    assert TrainingSettings.from_config(Config().training) == TrainingSettings()
    custom = parse_config({"training": {"lora": False, "lora_dropout": 0.1, "loss_type": "ipo"}}, env={})
    settings = TrainingSettings.from_config(custom.training)
    assert (settings.lora, settings.lora_dropout, settings.loss_type) == (False, 0.1, "ipo")


def test_reward_model_cli_settings_default_to_the_config():
    from loop.cli.reward_model import _settings

    cfg = parse_config({}, env={})
    assert _settings(cfg, argparse.Namespace(lr=None, epochs=None)) == RewardTrainSettings()
    cfg = parse_config({"reward_training": {"epochs": 7, "heldout_fraction": 0.5}}, env={})
    settings = _settings(cfg, argparse.Namespace(lr=None, epochs=None))
    assert (settings.epochs, settings.heldout_fraction) == (7, 0.5)
    assert _settings(cfg, argparse.Namespace(lr=1e-3, epochs=2)).epochs == 2


def test_evaluation_defaults_are_the_config_defaults():
    from loop.evaluation.win_rate import evaluate_policies

    params = inspect.signature(evaluate_policies).parameters
    cfg = Config()
    expected = {
        "max_new_tokens": cfg.evaluation.max_new_tokens,
        "samples_per_prompt": cfg.evaluation.samples_per_prompt,
        "seed": cfg.evaluation.seed,
        "n_bootstrap": cfg.evaluation.n_bootstrap,
        "temperature": cfg.generation.temperature,
        "top_p": cfg.generation.top_p,
        "batch_size": cfg.generation.batch_size,
        "backend": cfg.generation.backend,
        "dtype": cfg.policy.dtype,
    }
    assert {name: params[name].default for name in expected} == expected


@pytest.mark.parametrize(
    ("text", "where", "allowed"),
    [
        ('[training]\nloss_type = "sigmod"\n', "[training] loss_type", "sigmoid, hinge, ipo"),
        ('[training]\ndtype = "float16"\n', "[training] dtype", "'float32' or 'bfloat16'"),
        ('[policy]\ndtype = "fp16"\n', "[policy] dtype", "'auto'"),
        ("[training]\nlora_dropout = 1.0\n", "[training] lora_dropout", "less than 1"),
        ("[training]\nlora_target_modules = []\n", "[training] lora_target_modules", "non-empty"),
        ("[training]\nbeta = nan\n", "[training] beta", "finite"),
        ("[training]\nmax_length = 1\n", "[training] max_length", "greater than or equal to 2"),
        ("[training]\nseed = -1\n", "[training] seed", "greater than or equal to 0"),
        ("[reward_training]\nheldout_fraction = 1.0\n", "[reward_training] heldout_fraction", "less than 1"),
        ("[reward_training]\nlearning_rate = 0\n", "[reward_training] learning_rate", "greater than 0"),
    ],
)
def test_training_values_fail_at_load_naming_key_and_allowed_values(tmp_path, text, where, allowed):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text), env={})
    msg = str(e.value)
    assert "pvar-loop.toml" in msg and where in msg and allowed in msg


def test_every_dpo_loss_type_and_a_module_list_load(tmp_path):
    for loss in DPO_LOSS_TYPES:
        assert parse_config({"training": {"loss_type": loss}}, env={}).training.loss_type == loss
    cfg = load_config(_write(tmp_path, '[training]\nlora_target_modules = ["q_proj", "v_proj"]\n'), env={})
    assert TrainingSettings.from_config(cfg.training).lora_target_modules == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    ("settings_cls", "field", "value"),
    [
        (SampleSettings, "k", 1),
        (SampleSettings, "dtype", "float16"),
        (RewardTrainSettings, "dtype", "auto"),
        (RewardTrainSettings, "max_length", 1),
        (RewardTrainSettings, "seed", -1),
        (RewardTrainSettings, "learning_rate", float("inf")),
        (TrainingSettings, "lora_alpha", 0),
    ],
)
def test_settings_are_checked_by_the_config_rules(settings_cls, field, value):
    with pytest.raises(ValueError, match=rf"{settings_cls.__name__}\.{field}\b.*\(got {value!r}\)"):
        settings_cls(**{field: value})


ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


@pytest.mark.parametrize(
    "text, message",
    [
        ('[training]\nlauncher = "accelerate"\n', 'launcher = "accelerate" needs an accelerate config file'),
        ('[training]\naccelerate_config = "nowhere.yaml"\n', "nowhere.yaml' does not exist"),
        ('[training]\nlauncher = "torchrun"\n', "'inprocess' or 'accelerate'"),
        ("[training]\nnum_processes = 0\n", "greater than or equal to 1"),
    ],
)
def test_bad_launcher_settings_fail_at_load_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text), env={})
    key = (
        "launcher"
        if "torchrun" in text
        else "num_processes"
        if "num_processes" in text
        else "accelerate_config"
    )
    assert f"[training] {key}" in str(e.value) and message in str(e.value)


def test_accelerate_config_is_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "acc.yaml").write_text("num_processes: 1\n")
    monkeypatch.chdir(ACCELERATE_CONFIGS)  # not where the file is
    text = '[training]\nlauncher = "accelerate"\naccelerate_config = "acc.yaml"\nnum_processes = 2\n'
    training = load_config(_write(tmp_path, text), env={}).training
    assert (training.launcher, training.accelerate_config, training.num_processes) == (
        "accelerate",
        tmp_path / "acc.yaml",
        2,
    )
    assert Config().training.launcher == "inprocess" and Config().training.accelerate_config is None
    assert (
        'launcher = "inprocess"' in default_config_toml()
        and "# accelerate_config = " in default_config_toml()
    )


def test_committed_accelerate_configs_load():
    import yaml

    multi = yaml.safe_load((ACCELERATE_CONFIGS / "multi_gpu.yaml").read_text())
    cpu = yaml.safe_load((ACCELERATE_CONFIGS / "cpu_one_process.yaml").read_text())
    assert (multi["distributed_type"], multi["mixed_precision"], multi["use_cpu"]) == (
        "MULTI_GPU",
        "no",
        False,
    )
    assert (cpu["distributed_type"], cpu["num_processes"], cpu["use_cpu"]) == ("NO", 1, True)
    cfg = parse_config(
        {
            "training": {
                "launcher": "accelerate",
                "accelerate_config": str(ACCELERATE_CONFIGS / "multi_gpu.yaml"),
            }
        },
        env={},
    )
    assert cfg.training.accelerate_config.name == "multi_gpu.yaml"
