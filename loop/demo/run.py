"""`pvar-loop demo`: the whole loop, offline, on this machine, driven by the real scheduler.

A fresh data dir gets a config, the demo world's prompts (checkable instructions), models, a local Argilla
stack and an annotator bot that labels through Argilla's annotator API the way a person would (its judgement: the
rule-based verifier with Bradley-Terry noise). `pvar-loop run` drives the rounds in a child process; when the
asked-for rounds are done the demo stops it and writes the report.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path

from loop.demo.selection_rm import RM_EPOCHS, RM_LEARNING_RATE, verifier_judge
from storage.errors import PvarLoopError
from storage.private import write_private_text

log = logging.getLogger(__name__)

MARKER = ".pvar-loop-demo"
DEMO_WORKSPACE = "pvar-loop"  # the Argilla workspace of the demo's config, known before the config is written
CONFIG_FILE = "pvar-loop.toml"
TINY_MODELS = "tiny-random"  # the quick profile's models, under the model cache


@dataclass(frozen=True)
class Profile:
    name: str
    n_train: int
    n_eval: int
    n_seed: int  # seed pool for the learned selection RM; 0: the tiny random RM is used as is
    budget: int
    k: int
    max_new_tokens: int
    eval_samples: int  # [evaluation] samples_per_prompt: evaluation time grows in proportion
    learning_rate: float
    epochs: int
    dtype: str  # policy sampling and DPO (bf16 autocast on CPU)
    lora: bool
    allow_ties: bool  # False: the bot must pick a side even when the verifier scores both the same
    note: str


QUICK = Profile(
    name="quick",
    n_train=48,
    n_eval=16,
    n_seed=0,
    budget=8,
    k=4,
    max_new_tokens=16,
    eval_samples=2,
    learning_rate=5e-5,
    epochs=2,
    dtype="float32",
    lora=False,
    allow_ties=False,  # tiny random models tie on the verifier most of the time; forced choice keeps DPO fed
    note="tiny random models show the mechanics of the loop, not the effect of PVar selection",
)

# Settings after the pilot in docs/experiment.md (LoRA r16, lr 2e-4, short answers), cut to fit ~10 minutes.
FULL = Profile(
    name="full",
    n_train=64,
    n_eval=48,
    n_seed=96,
    budget=16,
    k=4,
    max_new_tokens=48,
    eval_samples=2,  # 4 would double the demo's evaluation time; the demo shows the loop, not the effect
    learning_rate=2e-4,
    epochs=2,
    dtype="bfloat16",
    lora=True,
    allow_ties=True,
    note="SmolLM2-135M-Instruct policy, a MiniLM selection reward model trained on seed labels; 2 small rounds "
    "show the loop for real, but too few eval prompts to separate strategies (see `pvar-loop experiment`)",
)
PROFILES = {p.name: p for p in (QUICK, FULL)}


class DemoError(PvarLoopError, RuntimeError):
    """The demo could not run; the message says what to fix."""


def fresh_dir(path: Path) -> None:
    """Empty `path` for a new run, but only if it is empty or an earlier demo's (never a user's folder)."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise DemoError(f"{path} exists and is not a pvar-loop demo directory; choose another --data-dir")
        from annotation.stack.local_stack import stop_stack

        if (path / "argilla").exists():
            stop_stack(path / "argilla")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("created by pvar-loop demo; removed by the next demo run\n")


def write_config(
    path: Path,
    data_dir: Path,
    policy: Path,
    reward: Path,
    p: Profile,
    *,
    rounds_seed: int,
    backend: str = "auto",
) -> Path:
    text = f"""# Written by `pvar-loop demo` ({p.name} profile).
[paths]
data_dir = "{data_dir}"

[policy]
model = "{policy}"
dtype = "{p.dtype}"

[generation]
backend = "{backend}"
k = {p.k}
max_new_tokens = {p.max_new_tokens}
batch_size = 8
seed = {rounds_seed}

[reward]
model = "{reward}"
dtype = "float32"
max_length = 256
refresh = "every_round"

[reward_training]
learning_rate = {RM_LEARNING_RATE}
epochs = {RM_EPOCHS}

[selection]
strategy = "pvar"
budget = {p.budget}
seed = {rounds_seed}

[argilla]
dataset = "pvar-demo"
workspace = "{DEMO_WORKSPACE}"
min_submitted = 1

[training]
learning_rate = {p.learning_rate}
epochs = {p.epochs}
batch_size = {8 if p.lora else 4}
max_length = 256
lora = {str(p.lora).lower()}
dtype = "{p.dtype}"

[evaluation]
judge = "verifier"
max_new_tokens = {p.max_new_tokens}
samples_per_prompt = {p.eval_samples}
n_bootstrap = 1000

[scheduler]
tick_seconds = 2
poll_seconds = 5
misfire_grace_seconds = 60
collect_deadline_hours = 1.0
min_decided = 1
"""
    target = path / CONFIG_FILE
    write_private_text(target, text)  # like every config pvar-loop writes: it may come to hold secrets
    return target


def _rounds_done(uow) -> int:
    from storage.repositories.rounds import count_rounds
    from storage.statuses import RoundStatus

    with uow() as session:
        return count_rounds(session, RoundStatus.DONE)


def _failed_reason(uow) -> str | None:
    from storage.repositories.rounds import first_reason
    from storage.statuses import RoundStatus

    with uow() as session:
        return first_reason(session, RoundStatus.freeing_states())


def _retry_reason(uow) -> str | None:
    """The open round's last step error, if its last attempt failed (the scheduler retries it every tick)."""
    from storage.repositories.rounds import first_reason
    from storage.statuses import RoundStatus

    with uow() as session:
        reason = first_reason(session, RoundStatus.open_states())
    return reason if reason and reason.startswith("last attempt failed") else None


@dataclass(frozen=True)
class World:
    """A prepared demo data dir: its config (DB migrated, prompts ingested) and the selection RM's origin."""

    config: Path
    cli: list[str]
    env: dict[str, str]
    seed_summary: str | None  # how the learned selection reward model was trained (None: tiny random RM)


def prepare_world(
    data_dir: Path, p: Profile, model_cache: Path, *, say=print, backend: str = "auto", fresh: bool = True
) -> World:
    """Fresh data dir with prompts, models and a config; for the full profile, train the selection RM first.
    fresh=False: the caller emptied the data dir already (the demo, whose Argilla stack starts meanwhile)."""
    from loop.demo.world import write_demo_prompts

    data_dir = data_dir.resolve()
    check_cache_outside(data_dir, Path(model_cache))
    if fresh:
        fresh_dir(data_dir)
    files = write_demo_prompts(
        data_dir / "prompts", n_train=p.n_train, n_eval=p.n_eval, seed=0, n_seed=p.n_seed
    )
    cache = Path(model_cache).resolve()
    if p.n_seed:
        policy, reward, summary = _learned_models(p, cache, files[2], say, backend)
    else:
        from loop.ml.offline_models import build_tiny_models

        models = build_tiny_models(cache / TINY_MODELS)  # built once, reused by the next quick demo
        policy, reward, summary = models.policy_dir, models.reward_dir, None
    config = write_config(data_dir, data_dir, policy, reward, p, rounds_seed=0, backend=backend)
    say(f"[demo] models: policy {policy}, selection reward model {reward} (config {config})")
    cli = [sys.executable, "-m", "loop.cli", "--config", str(config)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PVAR_LOOP_ACTOR": "demo"}
    for cmd in (["db", "upgrade"], ["ingest", str(files[0])], ["ingest", str(files[1]), "--split", "eval"]):
        subprocess.run([*cli, *cmd], check=True, env=env, stdout=subprocess.DEVNULL)
    return World(config=config, cli=cli, env=env, seed_summary=summary)


def check_cache_outside(data_dir: Path, model_cache: Path) -> None:
    """The next demo empties its data dir: a model cache inside it would be deleted with it."""
    data_dir, cache = data_dir.resolve(), model_cache.resolve()
    if cache == data_dir or cache.is_relative_to(data_dir):
        raise DemoError(
            f"--model-cache {model_cache} is inside --data-dir {data_dir}, which the next demo empties; "
            "choose a cache outside it (default data/models)"
        )


def _learned_models(p: Profile, cache: Path, seed_file: Path, say, backend: str) -> tuple[Path, Path, str]:
    """SmolLM2 as the policy; a MiniLM reward model trained on bot labels of the seed pool (sampled with the
    world's generation backend) as the selector."""
    from loop.demo.selection_rm import selection_reward_model
    from loop.ml.offline_models import load_minilm_reward_backbone, load_smollm2

    say(f"[demo] models: SmolLM2-135M-Instruct and all-MiniLM-L6-v2 (converted once into {cache})")
    policy, base = load_smollm2(cache), load_minilm_reward_backbone(cache)
    reward, summary = selection_reward_model(p, cache, seed_file, policy, base, say, backend=backend)
    return policy, reward, summary


def run_demo(
    data_dir: Path,
    *,
    profile: Profile = QUICK,
    rounds: int = 2,
    keep_argilla: bool = False,
    timeout_s: float = 900,
    model_cache: Path = Path("data/models"),
    backend: str = "auto",
) -> Path:
    """Run the demo end to end; returns the report's index.html."""
    from annotation.annotators import create_annotator
    from annotation.simulated.bot import AnnotatorBot
    from annotation.stack.local_stack import start_stack, stop_stack
    from annotation.stack.services import StackStartCancelled
    from loop.config import load_config

    p = profile
    t0 = time.perf_counter()
    # SIGTERM must unwind like Ctrl-C, so the finally blocks below stop the scheduler and the Argilla stack.
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    data_dir = data_dir.resolve()
    print(f"[demo] {p.name} profile in {data_dir}: {p.note}")
    check_cache_outside(data_dir, Path(model_cache))
    fresh_dir(data_dir)
    print("[demo] starting the local Argilla stack ...")
    # The stack starts (about 12 s on 2 cores) while the world is prepared; the scheduler starts once both are.
    cancel = threading.Event()
    starting = ThreadPoolExecutor(1, thread_name_prefix="argilla-stack")
    stack_started = starting.submit(
        start_stack, data_dir / "argilla", workspace=DEMO_WORKSPACE, cancel=cancel
    )
    starting.shutdown(wait=False)
    scheduler = stack_stopped = None
    completed = False
    try:
        world = prepare_world(data_dir, p, model_cache, backend=backend, fresh=False)
        config, cli, env = world.config, world.cli, world.env
        # Budget 0 from the round after the last one asked for, so the scheduler goes idle instead of starting
        # a round the demo will not finish (recorded as an operator action, like any budget change).
        pause = ["budget", "set", "0", "--from-round", str(rounds + 1)]
        subprocess.run([*cli, *pause], check=True, env=env, stdout=subprocess.DEVNULL)
        cfg = load_config(config)
        stack = stack_started.result()
        from loop.argilla_client import connect_client

        client = connect_client(cfg)
        bot_user = create_annotator(client.http_client, "demo-bot", cfg.argilla.workspace)
        print(
            f"[demo] Argilla UI: {stack.url}/sign-in  (owner {stack.username!r}; password in "
            f"{data_dir / 'argilla' / 'stack.json'}). Label alongside the bot if you like."
        )
        from storage.db import UnitOfWork, make_engine

        uow = UnitOfWork(make_engine(cfg.database_url))
        prompts = _constraints_by_prompt(uow)
        judge = verifier_judge(prompts, seed=0, allow_ties=p.allow_ties)
        log_file = (data_dir / "scheduler.log").open("wb")
        scheduler = subprocess.Popen(
            [*cli, "run"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        print(
            f"[demo] scheduler running (pid {scheduler.pid}, log {data_dir / 'scheduler.log'}); "
            f"waiting for {rounds} rounds"
        )
        # The report's plotting and interval libraries load while this process waits on the rounds.
        threading.Thread(target=_import_report_libraries, name="report-imports", daemon=True).start()
        with AnnotatorBot(stack.url, bot_user.api_key, judge) as bot:
            _label_until(uow, bot, cfg, rounds, scheduler, timeout_s)
        _stop(scheduler)
        scheduler = None
        if not keep_argilla:  # the stack stops (about 3 s) while the report is written
            stopping = ThreadPoolExecutor(1, thread_name_prefix="argilla-stop")
            stack_stopped = stopping.submit(stop_stack, data_dir / "argilla")
            stopping.shutdown(wait=False)
        report = _write_report(uow, data_dir / "report")
        if stack_stopped is not None:
            stack_stopped.result()
        completed = True
        print(f"[demo] {rounds} rounds done in {time.perf_counter() - t0:.0f} s; report: {report}")
        if world.seed_summary:
            print(f"[demo] {world.seed_summary}")
        print(f"[demo] {p.note}")
        return report
    finally:
        if not completed:
            cancel.set()  # a stack still starting stops at its next wait, and stops what it started
        if scheduler is not None:
            _stop(scheduler)
        _settle(stack_started)
        if stack_stopped is not None:
            _settle(stack_stopped)
        start_error = stack_started.exception()
        if start_error is not None and not isinstance(start_error, StackStartCancelled):
            log.error("the Argilla stack did not start: %s", start_error)  # maybe not the error propagating
        if keep_argilla and completed:
            print(
                f"[demo] Argilla left running at {stack_started.result().url}; stop it with "
                f"`pvar-loop --config {data_dir / CONFIG_FILE} argilla down`"
            )
        elif stack_stopped is None or stack_stopped.exception() is not None:
            stop_stack(data_dir / "argilla")  # a kept stack too when the demo failed: it is of no use then
        signal.signal(signal.SIGTERM, previous_sigterm)


def _import_report_libraries() -> None:
    from loop.report.plots import pyplot

    pyplot()
    import statsmodels.stats.proportion  # noqa: F401  (wilson intervals)


def _settle(future) -> None:
    """Wait for a background start or stop to end, however it ends (its error, if any, is the caller's to read).
    A cancelled start ends within one set-up command (seconds), so a second Ctrl-C meanwhile waits on too: it
    must not leave the stack's processes behind."""
    while True:
        try:
            futures_wait([future])
            return
        except KeyboardInterrupt:
            continue


def _constraints_by_prompt(uow) -> dict[str, list]:
    from storage.repositories.prompts import constraints_by_text

    with uow() as session:
        return constraints_by_text(session)


def _label_until(uow, bot, cfg, rounds: int, scheduler: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = -1
    failing_since = None
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise DemoError(f"the scheduler exited with code {scheduler.returncode}; see scheduler.log")
        done = _rounds_done(uow)
        if done != last:
            print(f"[demo] rounds done: {done}/{rounds}")
            last = done
        if done >= rounds:
            return
        reason = _failed_reason(uow)
        if reason:
            raise DemoError(f"a round ended early: {reason}")
        retry = _retry_reason(uow)
        failing_since = (failing_since or time.monotonic()) if retry else None
        if retry and time.monotonic() - failing_since > 60:
            raise DemoError(f"a round step keeps failing (see scheduler.log): {retry}")
        # The shared dataset, or with min_submitted >= 2 the bot's own (annotation.blind); both appear with
        # the first push.
        for dataset_id in bot.dataset_ids(cfg.argilla.dataset):
            bot.run(dataset_id)
        time.sleep(1)  # a person answering takes longer; the demo's bot answers within a second of a push
    raise DemoError(f"{rounds} rounds did not finish within {timeout_s:.0f} s; see scheduler.log")


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write_report(uow, out: Path) -> Path:
    from loop.report.build import build_report

    with uow() as session:
        files = build_report(session, out)
    if files.verdict:
        print(f"[demo] {files.verdict}")
    return files.index
