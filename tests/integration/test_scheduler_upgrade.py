"""Upgrading a running deployment: the APScheduler job store on the project database still holds jobs pickled
by the code before the package split (`loop.scheduler:tick_job`), a module that no longer exists. The new
`pvar-loop run` must replace them and tick, not drop them with "Unable to restore job"."""

from __future__ import annotations

import pickle
import signal
import time

from sqlalchemy import select, update

from loop.rounds.scheduler import POLL_JOB, TICK_JOB
from storage.db import make_engine
from tests.support.round_project import make_project

OLD_REFS = {TICK_JOB: "loop.scheduler:tick_job", POLL_JOB: "loop.scheduler:poll_job"}


def _write_old_job_store(url: str, config: str) -> None:
    """Jobs as the pre-split scheduler stored them: same ids, triggers and args, the old function paths."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from loop.rounds.scheduler import poll_job, tick_job

    engine = make_engine(url)
    store = SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)
    scheduler.add_job(tick_job, "interval", seconds=1, id=TICK_JOB, args=[config])
    scheduler.add_job(poll_job, "interval", seconds=60, id=POLL_JOB, args=[config])
    scheduler.shutdown(wait=False)
    table = store.jobs_t
    with engine.begin() as conn:
        for job_id, state in conn.execute(select(table.c.id, table.c.job_state)).all():
            job = pickle.loads(state)
            job["func"] = OLD_REFS[job_id]
            conn.execute(update(table).where(table.c.id == job_id).values(job_state=pickle.dumps(job, 2)))
    engine.dispose()


def _stored_refs(url: str) -> dict[str, str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, job_state FROM apscheduler_jobs").all()
        return {job_id: pickle.loads(state)["func"] for job_id, state in rows}
    finally:
        engine.dispose()


def test_run_replaces_jobs_pickled_by_the_old_module_paths(tmp_path, tiny_models):
    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    project = make_project(tmp_path, tiny_models, database_url=url)
    assert project.cli("budget", "set", "0").returncode == 0  # ticks are cheap: new rounds are paused
    _write_old_job_store(url, str(project.config))
    assert _stored_refs(url) == OLD_REFS

    log = tmp_path / "run.log"
    proc = project.popen("run", log=log)
    try:
        deadline = time.monotonic() + 90
        while "tick: budget is 0" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "tick: budget is 0" in text, text
    assert "Unable to restore job" not in text
    assert _stored_refs(url) == {
        TICK_JOB: "loop.rounds.scheduler:tick_job",
        POLL_JOB: "loop.rounds.scheduler:poll_job",
    }
