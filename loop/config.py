"""The one validated configuration object: a TOML file plus environment overrides for secrets and URLs.

Every section is a pydantic model with `extra="forbid"`, so a typo is an error that names the key and
lists the allowed ones instead of a silently ignored setting.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from loop.acquisition.strategies import Strategy
from storage.errors import PvarLoopError

CONFIG_FILENAME = "pvar-loop.toml"
DEFAULT_DATA_DIR = Path(".pvar-loop")

# Env var -> (section, key). Secrets and URLs belong in the environment, not in a committed file.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "PVAR_LOOP_DATABASE_URL": ("database", "url"),
    "PVAR_LOOP_DATA_DIR": ("paths", "data_dir"),
    "PVAR_LOOP_ARGILLA_URL": ("argilla", "url"),
    "PVAR_LOOP_ARGILLA_API_KEY": ("argilla", "api_key"),
}


class ConfigError(PvarLoopError, ValueError):
    """A configuration problem, with the file and key it concerns in the message."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class PathsConfig(_Section):
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the SQLite DB, checkpoints and reports live.")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _path_from_str(cls, v: object) -> object:
        return Path(v) if isinstance(v, str) else v


class DatabaseConfig(_Section):
    url: str | None = Field(None, description="SQLAlchemy URL; default: sqlite file <data_dir>/pvar-loop.db.")


class PoolConfig(_Section):
    max_prompt_chars: int = Field(8000, gt=0, description="Ingest rejects longer prompts.")


class PolicyConfig(_Section):
    model: str = Field("HuggingFaceTB/SmolLM2-135M-Instruct", description="Hub id or local directory.")
    dtype: Literal["float32", "bfloat16", "auto"] = "bfloat16"


class GenerationConfig(_Section):
    backend: Literal["transformers", "vllm"] = "transformers"
    k: int = Field(5, ge=2, description="Responses sampled per prompt (the paper's K).")
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(128, gt=0)
    batch_size: int = Field(8, gt=0, description="Prompts per generate call (and per committed batch).")
    seed: int = 0


class RewardConfig(_Section):
    model: str = Field("Skywork/Skywork-Reward-V2-Llama-3.2-1B", description="Hub id or local directory.")
    dtype: Literal["float32", "bfloat16", "auto"] = "bfloat16"
    max_length: int = Field(1024, gt=0, description="Tokens of prompt+response kept (truncated beyond).")
    batch_size: int = Field(16, gt=0)


class SelectionConfig(_Section):
    strategy: Literal[
        Strategy.PVAR, Strategy.LOW_PVAR, Strategy.REWARD_GAP, Strategy.RANDOM, Strategy.FULL
    ] = Strategy.PVAR
    budget: int = Field(64, ge=0, description="Labels (prompts) per round; 0 pauses new rounds.")
    seed: int = 0


class ArgillaConfig(_Section):
    url: str = "http://127.0.0.1:6900"
    api_key: SecretStr | None = None
    workspace: str = "pvar-loop"
    dataset: str = "pvar-preferences"
    min_submitted: int = Field(1, ge=1, description="Annotators who must answer a record (overlap).")

    @field_validator("api_key", mode="before")
    @classmethod
    def _secret_from_str(cls, v: object) -> object:
        return SecretStr(v) if isinstance(v, str) else v


class TrainingConfig(_Section):
    beta: float = Field(0.1, gt=0)
    learning_rate: float = Field(5e-6, gt=0)
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(8, gt=0)
    max_length: int = Field(512, gt=0)
    loss_type: str = "sigmoid"
    lora: bool = True
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    precompute_ref_log_probs: bool = False
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    seed: int = 0
    cumulative: bool = Field(True, description="Train on labels of all rounds (else only the latest round).")
    warm_start: bool = Field(True, description="Start from the previous round's checkpoint.")


class EvaluationConfig(_Section):
    judge: Literal["reward", "verifier"] = "reward"
    max_new_tokens: int = Field(128, gt=0)
    n_bootstrap: int = Field(2000, gt=0)
    seed: int = 1


class SchedulerConfig(_Section):
    tick_seconds: int = Field(30, gt=0)
    poll_seconds: int = Field(60, gt=0)
    misfire_grace_seconds: int = Field(300, gt=0)
    collect_deadline_hours: float = Field(72.0, gt=0)
    min_decided: int = Field(1, ge=0)


class Config(_Section):
    paths: PathsConfig = PathsConfig()
    database: DatabaseConfig = DatabaseConfig()
    pool: PoolConfig = PoolConfig()
    policy: PolicyConfig = PolicyConfig()
    generation: GenerationConfig = GenerationConfig()
    reward: RewardConfig = RewardConfig()
    selection: SelectionConfig = SelectionConfig()
    argilla: ArgillaConfig = ArgillaConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    scheduler: SchedulerConfig = SchedulerConfig()

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.paths.data_dir / 'pvar-loop.db').resolve()}"


def _describe(error: dict, source: str) -> str:
    loc = [str(p) for p in error["loc"]]
    where = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else f"[{loc[0]}]" if loc else "top level"
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        section = _section_model(loc[:-1])
        allowed = ", ".join(section.model_fields) if section else "?"
        msg = f"unknown key; allowed keys here: {allowed}"
    elif "input" in error and not isinstance(error["input"], dict | SecretStr) and "api_key" not in loc:
        msg = f"{msg} (got {error['input']!r})"
    return f"{source}: {where}: {msg}"


def _section_model(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        if (
            field is None
            or not isinstance(field.annotation, type)
            or not issubclass(field.annotation, BaseModel)
        ):
            return None
        model = field.annotation
    return model


def _apply_env(raw: dict, env: dict[str, str]) -> dict:
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            raw.setdefault(section, {})
            if not isinstance(raw[section], dict):
                raise ConfigError(f"[{section}] must be a table to apply {var}")
            raw[section][key] = env[var]
    return raw


def parse_config(raw: dict, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    raw = _apply_env(raw, dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        lines = [_describe(err, source) for err in e.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def load_config(path: Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Load `path` (or ./pvar-loop.toml when present, else defaults) and apply env overrides."""
    if path is None:
        path = Path(CONFIG_FILENAME)
        if not path.exists():
            return parse_config({}, "<defaults>", env)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from e
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return parse_config(raw, str(path), env)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_toml() -> str:
    """A commented TOML file with every key at its default (written by `pvar-loop init`)."""
    out = [
        "# pvar-loop configuration. Every key is optional; shown values are the defaults.",
        "# Env overrides: " + ", ".join(ENV_OVERRIDES) + " (keep secrets there, not here).",
    ]
    for name, field in Config.model_fields.items():
        section: type[BaseModel] = field.annotation  # type: ignore[assignment]
        out += ["", f"[{name}]"]
        for key, sub in section.model_fields.items():
            if sub.description:
                out.append(f"# {sub.description}")
            if sub.default is None:
                out.append(f"# {key} = ")
            else:
                out.append(f"{key} = {_toml_value(sub.default)}")
    return "\n".join(out) + "\n"
