"""`pvar-loop sweep run`: set up the world (once), the selection RMs (once), run the cells (resumable), write the
report. Run facts (profile, timings, RM calibration) live in <data dir>/experiment/sweep.json next to the
database that holds every result."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

from loop.experiment.runner import ExperimentError
from loop.experiment.sweep.cells import SweepProfile, run_cells, sweep_config, write_json
from loop.experiment.sweep.mechanism import FILE as MECHANISM
from loop.experiment.sweep.mechanism import read_rows, write_rows

FACTS = Path("experiment") / "sweep.json"


def _profile_facts(p: SweepProfile) -> dict:
    w = p.world
    return {
        "name": p.name,
        "n_train": w.n_train,
        "n_eval": w.n_eval,
        "n_seed": w.n_seed,
        "k": w.k,
        "max_new_tokens": w.max_new_tokens,
        "budgets": list(p.budgets),
        "seeds": list(p.seeds),
        "standins": list(p.standins),
        "learned": p.learned,
        "curve_rm": p.curve_rm,
        "samples_per_prompt": p.samples_per_prompt,
        "primary": p.primary_facts(),
        **p.contrast_facts(),
        **({"rounds": p.rounds} if p.rounds > 1 else {}),
    }


def facts_path(data_dir: Path, profile: str | None = None) -> Path:
    """Where a profile's run facts are: the sweep that made the data dir in experiment/sweep.json, another
    profile run over the same world in experiment/sweep-<profile>.json (profile None: the first)."""
    base = data_dir / FACTS
    if profile is None or not base.is_file():
        return base
    if json.loads(base.read_text(encoding="utf-8"))["profile"]["name"] == profile:
        return base
    return base.with_name(f"sweep-{profile}.json")


def read_facts(data_dir: Path, profile: str | None = None) -> dict:
    path = facts_path(data_dir, profile)
    if not path.exists():
        what = f"no {profile} sweep" if profile and (data_dir / FACTS).exists() else "no sweep"
        raise ExperimentError(
            f"{data_dir} holds {what} ({path.relative_to(data_dir)} is missing): run `pvar-loop sweep run` first"
        )
    return json.loads(path.read_text(encoding="utf-8"))


# What profiles sharing a data dir must agree on: cells both have are run and evaluated once.
SHARED_SETTINGS = ("n_train", "n_eval", "n_seed", "k", "max_new_tokens", "samples_per_prompt")


def _join_world(data_dir: Path, p: SweepProfile, base: dict, *, resume: bool) -> dict:
    """Another profile over the sweep's world (the same pool, eval split, RMs and database): its own facts,
    the world's from the sweep that made it; cells both profiles have run once."""
    from loop.experiment.sweep.profiles import PROFILES

    made_by = base["profile"]["name"]
    mine = _profile_facts(p)
    differ = [k for k in SHARED_SETTINGS if base["profile"].get(k) != mine[k]]
    if made_by not in PROFILES or PROFILES[made_by].world != p.world or differ:
        detail = f" ({', '.join(differ)} differ from {FACTS})" if differ else ""
        raise ExperimentError(
            f"--profile {p.name}: {data_dir} holds a {made_by!r} sweep of another world or evaluation{detail}; "
            f"resume it with --profile {made_by}, or choose another --data-dir"
        )
    path = facts_path(data_dir, p.name)
    if path.exists():
        if not resume:
            raise ExperimentError(
                f"{data_dir} holds a {p.name} sweep already: add --resume to finish it, or choose another "
                "--data-dir"
            )
        return json.loads(path.read_text(encoding="utf-8"))
    if resume:
        raise ExperimentError(
            f"--resume: {data_dir} holds no {p.name} sweep to resume ({path.name} is missing)"
        )
    world = ("config", "data_dir_arg", "policy", "selection_rm_training", "machine")
    facts = {k: base[k] for k in world}
    facts.update(
        profile=_profile_facts(p),
        world_of=made_by,
        command=f"pvar-loop sweep run --profile {p.name} --data-dir {base['data_dir_arg']}",
        setup_s=0.0,
        wall_s=0.0,
        rms={},
    )
    write_json(path, facts)
    return facts


def _machine() -> str:
    return f"{os.cpu_count()} CPU cores ({platform.machine()})"


def start_or_resume(data_dir: Path, p: SweepProfile, model_cache: Path, *, resume: bool, say=print) -> dict:
    """The sweep's facts: a new world (never over an existing sweep), the one --resume continues, or another
    profile's run over the same world (see _join_world)."""
    from loop.config import load_config
    from loop.demo.run import prepare_world

    data_dir_arg, data_dir = data_dir, data_dir.resolve()
    path = data_dir / FACTS
    if path.exists():
        facts = json.loads(path.read_text(encoding="utf-8"))
        if facts["profile"]["name"] != p.name:
            return _join_world(data_dir, p, facts, resume=resume)
        if not resume:
            raise ExperimentError(
                f"{data_dir} holds a sweep already: add --resume to finish it, or choose another --data-dir"
            )
        return facts
    if resume:
        raise ExperimentError(f"--resume: {data_dir} holds no sweep to resume ({FACTS} is missing)")
    t0 = time.perf_counter()
    world = prepare_world(data_dir, p.world, model_cache, say=say)
    facts = {
        "profile": _profile_facts(p),
        "config": str(world.config),
        "data_dir_arg": str(data_dir_arg),
        "policy": Path(load_config(world.config).policy.model).name,
        "command": f"pvar-loop sweep run --profile {p.name} --data-dir {data_dir_arg}",
        "selection_rm_training": world.seed_summary,
        "machine": _machine(),
        "setup_s": time.perf_counter() - t0,
        "wall_s": time.perf_counter() - t0,
        "rms": {},
    }
    write_json(path, facts)
    return facts


def _sweep_uow(cfg):
    """The sweep's own database, migrated to this version's schema (a sweep resumed after an upgrade of
    pvar-loop goes on in place; the data dir belongs to the sweep, so migrating it is safe)."""
    from storage.db import UnitOfWork, make_engine
    from storage.migrate import upgrade

    engine = make_engine(cfg.database_url)
    upgrade(engine)
    return UnitOfWork(engine)


def run(
    data_dir: Path,
    p: SweepProfile,
    model_cache: Path,
    *,
    resume: bool,
    max_cells: int | None = None,
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    say=print,
) -> dict:
    """Everything `pvar-loop sweep run` does; returns {arm: status}. jobs > 1: the cells run in that many
    worker processes (`--shard i/n`), each with cores / jobs threads; only this process writes the facts."""
    from loop.config import load_config
    from loop.experiment.annotator import verifier_annotation
    from loop.experiment.sweep.selection_rms import prepare_selection_rms

    facts = start_or_resume(data_dir, p, model_cache, resume=resume or shard is not None, say=say)
    data_dir = data_dir.resolve()
    own = facts_path(data_dir, p.name)
    cfg = sweep_config(load_config(Path(facts["config"])), p)

    def record(since: float, base: dict, keys: tuple[str, ...]):
        """Add the time since `since` to these facts (on every tick of a worker phase too: a run killed
        outright loses at most one tick of its wall time)."""

        def tick(_elapsed: float | None = None) -> None:
            for k in keys:
                facts[k] = base[k] + time.perf_counter() - since
            write_json(own, facts)

        return tick

    t0 = time.perf_counter()
    if jobs > 1 and shard is None and max_cells is None:
        draws = record(t0, dict(facts), ("setup_s", "wall_s"))
        _train_draws_in_workers(data_dir, cfg, p, model_cache, jobs, say, on_tick=draws)
        draws()
        t0 = time.perf_counter()
    uow = _sweep_uow(cfg)
    rms, scorer_for = prepare_selection_rms(cfg, uow, p, data_dir, Path(model_cache).resolve())
    annotator = verifier_annotation(uow)
    if shard is not None:  # a worker: its cells only, facts left to the parent
        cores = pin_to_worker_cores()
        say(f"[sweep {shard[0] + 1}/{shard[1]}] on core(s) {','.join(map(str, cores))}")

        def worker_cell(cell, status: str, wall: float) -> None:
            say(f"[sweep {shard[0] + 1}/{shard[1]}] {cell.arm}: {status} in {wall:.0f} s")

        return run_cells(cfg, uow, p, rms, annotator, scorer_for, on_cell=worker_cell, shard=shard)
    facts["rms"] = rms.facts
    facts["setup_s"] += time.perf_counter() - t0
    facts["wall_s"] += time.perf_counter() - t0
    write_json(own, facts)
    say(f"[sweep] selection RMs ready: {', '.join(sorted(rms.facts))}")

    def on_cell(cell, status: str, wall: float) -> None:
        facts["wall_s"] += wall
        write_json(own, facts)
        say(f"[sweep] {cell.arm}: {status} in {wall:.0f} s (total {facts['wall_s'] / 60:.0f} min)")

    def run_here(limit: int | None) -> dict:
        return run_cells(cfg, uow, p, rms, annotator, scorer_for, on_cell=on_cell, max_cells=limit)

    if jobs == 1 or max_cells is not None:
        return run_here(max_cells)
    statuses = run_here(0)
    if all(s == "not run" for s in statuses.values()):
        run_here(1)  # the first cell samples the reference policy's eval answers, which every cell reuses
    cells_phase = record(time.perf_counter(), dict(facts), ("wall_s",))
    shards = [["--shard", f"{i}/{jobs}"] for i in range(jobs)]
    _run_workers(data_dir, p, model_cache, shards, say, on_tick=cells_phase)
    cells_phase()
    facts["jobs"] = jobs
    write_json(own, facts)
    return run_here(0)


def draws_to_train(data_dir: Path, p: SweepProfile) -> list[int]:
    """The learned-RM draws (seeds > 0) not trained yet."""
    from loop.experiment.sweep.selection_rms import learned_rm_dir

    if not p.learned:
        return []
    return [s for s in p.seeds if s != 0 and not learned_rm_dir(data_dir, s).exists()]


def train_draws(data_dir: Path, p: SweepProfile, model_cache: Path, seeds: list[int], say=print) -> None:
    """A draw worker (`--train-draws`): train these learned-RM draws, one after another, on this worker's cores."""
    from loop.config import load_config
    from loop.experiment.sweep.selection_rms import train_learned_rm

    cfg = load_config(Path(read_facts(data_dir.resolve())["config"]))
    cores = ",".join(map(str, pin_to_worker_cores()))
    for seed in seeds:
        t0 = time.perf_counter()
        train_learned_rm(
            data_dir.resolve(),
            Path(model_cache).resolve(),
            seed,
            max_length=cfg.reward.max_length,
            world_rm=Path(cfg.reward.model),
        )
        say(f"[sweep draws] learned RM seed {seed} in {time.perf_counter() - t0:.0f} s (core(s) {cores})")


def _train_draws_in_workers(
    data_dir: Path, cfg, p: SweepProfile, model_cache: Path, jobs: int, say, on_tick=None
) -> None:
    """Train the missing learned-RM draws in `jobs` worker processes, one core each, before any scoring: two
    1-thread trainings on 2 cores finish sooner than two 2-thread ones in turn (the same draws either way)."""
    todo = draws_to_train(data_dir, p)
    if len(todo) < 2:
        return  # nothing to share out: prepare_selection_rms trains a lone draw itself
    from loop.ml.offline_models import load_minilm_reward_backbone

    load_minilm_reward_backbone(
        Path(model_cache).resolve()
    )  # converted here once, not by two workers at a time
    say(f"[sweep] training {len(todo)} learned-RM draws in {min(jobs, len(todo))} workers")
    parts = [todo[i::jobs] for i in range(min(jobs, len(todo)))]
    _run_workers(
        data_dir,
        p,
        model_cache,
        [["--train-draws", ",".join(map(str, part))] for part in parts],
        say,
        on_tick=on_tick,
    )


def _run_workers(
    data_dir: Path, p: SweepProfile, model_cache: Path, worker_args: list[list[str]], say, on_tick=None
) -> None:
    """One worker process per entry of worker_args, each pinned to its own cores with as many threads (torch
    and OpenMP threads beyond the free cores spin against each other: on 2 cores two 1-thread workers beat one
    2-thread run)."""
    import subprocess
    import sys

    from loop.ml.loading import release_memory
    from loop.ml.vllm_engine import close_all_engines

    # A parent that keeps its engines (the first cell's, the world's) holds their KV caches while the workers
    # open their own: the pre-registered run's parent was OOM-killed at 8.9 GB on 24 GiB that way.
    close_all_engines()
    release_memory()
    jobs = len(worker_args)
    slices = worker_cores(jobs)
    threads = str(len(slices[0]))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    base = [sys.executable, "-m", "loop.cli", "sweep", "run", "--profile", p.name]
    base += ["--data-dir", str(data_dir), "--model-cache", str(Path(model_cache).resolve())]
    say(f"[sweep] {jobs} workers, {threads} thread(s) each")
    workers: list = []
    # A SIGTERM while the workers start waits until each started one is in `workers` (raised inside Popen, it
    # would orphan the worker being started); then it ends this process through Python, so `finally` runs.
    pending: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: pending.append(signum))
    try:
        for args, cores in zip(worker_args, slices, strict=True):
            mine = ",".join(map(str, cores))  # vLLM's threads too, whatever binding this process inherited
            env_w = {**env, "PVAR_LOOP_WORKER_CORES": mine, "VLLM_CPU_OMP_THREADS_BIND": mine}
            workers.append(subprocess.Popen([*base, *args], env=env_w))
        with _sigterm_raises():
            if pending:
                raise SystemExit(128 + pending[0])
            failed = wait_all(workers, on_tick)
    finally:  # stopping the parent (Ctrl-C, kill PID) stops its workers: no orphan keeps the cores busy
        signal.signal(signal.SIGTERM, previous)
        _stop(workers)
    if failed:
        raise ExperimentError(
            f"sweep worker(s) {', '.join(f'{i}/{jobs}' for i in failed)} failed (their output is above); "
            f"the cells they finished are kept: rerun with --resume"
        )


def wait_all(workers: list, on_tick=None, tick_s: float = 60.0) -> list[int]:
    """Wait for every worker, calling on_tick(seconds waited) every tick_s meanwhile; the failed ones' indices."""
    import subprocess

    t0 = time.perf_counter()
    while True:
        try:
            for w in workers:
                w.wait(timeout=tick_s)
            break
        except subprocess.TimeoutExpired:
            if on_tick is not None:
                on_tick(time.perf_counter() - t0)
    return [i for i, w in enumerate(workers) if w.returncode != 0]


def worker_cores(jobs: int) -> list[list[int]]:
    """Each worker's own cores: the free cores split into `jobs` equal slices (all of them for each when there
    are fewer cores than workers). Pinned apart, two 1-thread workers never share a core, and vLLM, which binds
    its OpenMP threads to the process's cores, starts one thread on its worker's core instead of one per core
    of the machine in every worker (threads that then spin against each other)."""
    cores = sorted(os.sched_getaffinity(0))
    per = len(cores) // jobs
    if per == 0:
        return [cores] * jobs
    return [cores[i * per : (i + 1) * per] for i in range(jobs)]


def pin_to_worker_cores() -> list[int]:
    """In a worker: move this process onto the cores its parent gave it (PVAR_LOOP_WORKER_CORES); its cores."""
    given = os.environ.get("PVAR_LOOP_WORKER_CORES")
    if given:
        os.sched_setaffinity(0, [int(c) for c in given.split(",")])
    return sorted(os.sched_getaffinity(0))


@contextmanager
def _sigterm_raises():
    """SIGTERM ends this process through Python (so `finally` runs) instead of killing it outright."""

    def raise_exit(signum, _frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(workers, grace_s: float = 30.0) -> None:
    """SIGTERM each worker still running, then SIGKILL those that outlive the grace period."""
    import subprocess

    running = [w for w in workers if w.poll() is None]
    for w in running:
        w.terminate()
    for w in running:
        try:
            w.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def _config_in_place(data_dir: Path, facts: dict):
    """The sweep's config read from the directory it is in now: a sweep copied or moved elsewhere still
    reports (its recorded config path and [paths] data_dir name where it was made)."""
    from loop.config import load_config

    here = data_dir / Path(facts["config"]).name
    cfg = load_config(here if here.is_file() else Path(facts["config"]))
    return cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"data_dir": data_dir})})


def write_report(
    data_dir: Path, out: Path, *, n_boot: int = 2000, profile: str | None = None
) -> tuple[Path, dict]:
    """Regenerate the results document (its plots next to it under img/, its JSON twin and its per-prompt
    table <out>.csv) from the database: the cells of `profile` (default: the profile that made the data dir)."""
    from loop.experiment.sweep.data import collect_cells, reference_samples
    from loop.experiment.sweep.table import write_table
    from storage.repositories.checkpoints import initial_checkpoint_id

    data_dir = data_dir.resolve()
    facts = read_facts(data_dir, profile)
    cfg = _config_in_place(data_dir, facts)
    uow = _sweep_uow(cfg)
    reference = initial_checkpoint_id(cfg.policy.model)
    with uow() as session:
        results, ref = collect_cells(session, reference)
        ref_n = reference_samples(session, reference)
    results = _of_profile(results, facts, data_dir)
    if not results:
        raise ExperimentError(f"{data_dir}: no sweep cell has finished yet")
    out = out.resolve()
    write_table(out.with_suffix(".csv"), results, ref, ref_n)
    mech = None
    if (data_dir / MECHANISM).is_file():  # `sweep mechanism` ran: its rows travel with the table
        shutil.copyfile(data_dir / MECHANISM, mechanism_table(out))
        mech = read_rows(data_dir / MECHANISM)
    return render_report(results, ref, facts, out, n_boot=n_boot, mechanism=mech)


def _of_profile(results: list, facts: dict, data_dir: Path) -> list:
    """The cells of the facts' profile when several profiles share the data dir's world (and database); a
    sweep alone in its directory reports every cell it holds."""
    from loop.experiment.sweep.cells import cells
    from loop.experiment.sweep.profiles import PROFILES

    name = facts["profile"]["name"]
    shared = facts.get("world_of") or any((data_dir / FACTS).parent.glob("sweep-*.json"))
    if not shared or name not in PROFILES:
        return results
    arms = {c.arm for c in cells(PROFILES[name])}
    return [r for r in results if r.cell.arm in arms]


def default_report(data_dir: Path, profile: str) -> Path:
    """Where `sweep run` writes its report without --out: results.md, or results-<profile>.md for a profile
    run over another's world (the first one's report stays)."""
    joined = read_facts(data_dir, profile).get("world_of")
    return data_dir / "experiment" / (f"results-{profile}.md" if joined else "results.md")


def mechanism_table(path: Path) -> Path:
    return path.with_name(f"{path.stem}-mechanism.csv")


def report_from_table(table: Path, out: Path, *, n_boot: int = 2000) -> tuple[Path, dict]:
    """The same document from a per-prompt table alone (the run's facts come from the table's JSON twin,
    <table>.json, which `sweep report` writes beside it)."""
    from loop.experiment.sweep.table import SweepTableError, read_table

    twin = table.with_suffix(".json")
    if not twin.is_file():
        raise SweepTableError(
            f"{twin}: the table's facts file is missing (written beside it by `sweep report`)"
        )
    try:
        facts = json.loads(twin.read_text(encoding="utf-8"))["facts"]
    except (ValueError, KeyError) as e:
        raise SweepTableError(f"{twin}: not a sweep report's JSON twin ({e})") from e
    results, ref = read_table(table)
    if not results:
        raise SweepTableError(f"{table}: the table holds no sweep cell")
    mech = read_rows(mechanism_table(table)) if mechanism_table(table).is_file() else None
    out = out.resolve()
    if mech is not None and mechanism_table(out) != mechanism_table(table).resolve():
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mechanism_table(table), mechanism_table(out))
    return render_report(results, ref, facts, out, n_boot=n_boot, mechanism=mech)


def _contrasts(profile: dict) -> list:
    pre = profile.get("primary")
    return [(tuple(pre["a"]), tuple(pre["b"]))] if pre else []


def _keys(rows: list) -> list[tuple]:
    return [tuple(tuple(k) for k in row) for row in rows]


def render_report(
    results, ref, facts: dict, out: Path, *, n_boot: int = 2000, mechanism: list[dict] | None = None
) -> tuple[Path, dict]:
    from loop.experiment.sweep.analysis import analyse
    from loop.experiment.sweep.mechanism import analyse_mechanism
    from loop.experiment.sweep.report import markdown, plot_curve, plot_dose_response

    agreements = {}
    for rm, f in facts["rms"].items():
        vals = [m["agreement"] for m in f.get("measured", {}).values() if m["agreement"] is not None]
        agreements[rm] = sum(vals) / len(vals) if vals else None
    prof = facts["profile"]
    analysis = analyse(
        results,
        budgets=prof["budgets"],
        curve_rm=prof["curve_rm"],
        agreements=agreements,
        contrasts=_contrasts(prof),
        secondary=_keys(prof.get("contrasts", [])),
        interactions=_keys(prof.get("interactions", [])),
        n_boot=n_boot,
    )
    initial = None if not ref else sum(ref[p] for p in sorted(ref)) / len(ref)
    analysis["initial_mean"] = initial
    analysis["mechanism"] = None if mechanism is None else analyse_mechanism(mechanism, n_boot=n_boot)
    img = out.parent / "img"
    curve = plot_curve(analysis, initial, img / f"{out.stem}-curve.png")
    dose = plot_dose_response(analysis, img / f"{out.stem}-rm-quality.png")
    rel = {k: os.path.relpath(v, out.parent) for k, v in (("curve", curve), ("dose", dose))}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(markdown(analysis, facts, rel, table=out.with_suffix(".csv").name), encoding="utf-8")
    tmp.replace(out)
    write_json(out.with_suffix(".json"), {"facts": facts, "analysis": analysis})
    return out, analysis


def measure_mechanism(data_dir: Path, seeds: list[int] | None, *, pool: bool = True, say=print) -> Path:
    """`pvar-loop sweep mechanism`: the gradient norms of the curve RM's largest-budget picks (and its pool
    pairs) for these seeds (default: the first three of the sweep), into <data dir>/experiment/mechanism.csv."""
    from loop.experiment.sweep.mechanism import collect

    data_dir = data_dir.resolve()
    facts = read_facts(data_dir)
    cfg = _config_in_place(data_dir, facts)
    chosen = seeds if seeds is not None else facts["profile"]["seeds"][:3]
    unknown = sorted(set(chosen) - set(facts["profile"]["seeds"]))
    if unknown:
        raise ExperimentError(f"--seeds: {unknown} are not seeds of this sweep ({facts['profile']['seeds']})")
    rows = collect(cfg, _sweep_uow(cfg), data_dir, facts, chosen, pool=pool, say=say)
    return write_rows(data_dir / MECHANISM, rows)
