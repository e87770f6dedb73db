"""Background jobs of the console: one small mechanism for "Sync now" and large downloads.

A job is a row of ``console_job`` (so that any web worker can show its progress page) and a thread of the
worker that started it (the work is I/O bound: reading the database, writing a file, talking to central).
The thread reports progress in short write transactions, at most every ``REPORT_EVERY`` seconds. A job
that writes a file keeps it in ``DATA_DIR/jobs/{id}/``; :func:`sweep` deletes jobs and their files after
``KEEP_FOR``, and marks as failed a job whose worker stopped reporting (it was restarted mid-job).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app
from sqlalchemy import select

from server.config import settings
from server.db import Database
from server.errors import Problem
from server.models import ConsoleJob, utcnow

log = logging.getLogger(__name__)

KEEP_FOR = dt.timedelta(hours=24)  # result files are deleted a day after the job started
STALE_AFTER = dt.timedelta(minutes=10)  # a running job silent this long lost its worker
REPORT_EVERY = 0.5  # seconds between progress writes
HEARTBEAT_SECONDS = 60.0  # a running job says it is alive this often, whatever its work does
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class JobResult:
    """What a finished job hands back: a file in its folder (``name``) and/or a message to show."""

    name: str | None = None
    content_type: str | None = None
    message: str | None = None


class Progress:
    """Handed to the work function: where to write its file, and how to report how far it is."""

    def __init__(self, database: Database, job_id: str, folder: Path) -> None:
        self.database = database
        self.job_id = job_id
        self.folder = folder
        self._last = 0.0

    def update(
        self, done: int, total: int | None = None, message: str | None = None, force: bool = False
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last < REPORT_EVERY:
            return
        self._last = now
        with self.database.write() as writer:
            job = writer.session.get(ConsoleJob, self.job_id)
            if job is None:
                return
            job.done, job.updated_at = done, utcnow()
            if total is not None:
                job.total = total
            if message is not None:
                job.message = message


Work = Callable[[Progress], JobResult]


def folder_of(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / job_id


def start(
    *,
    kind: str,
    title: str,
    user_id: int,
    project_id: int | None,
    work: Work,
) -> str:
    """Record a job and start its thread; returns its id. Called inside a request of the console."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    database: Database = app.extensions["sarhad.db"]
    data_dir = settings(app).data_dir
    sweep(database, data_dir)
    job_id = secrets.token_hex(16)
    with database.write() as writer:
        writer.session.add(
            ConsoleJob(id=job_id, kind=kind, title=title[:500], user_id=user_id, project_id=project_id)
        )
    thread = threading.Thread(
        target=_run, args=(app, database, folder_of(data_dir, job_id), job_id, work), daemon=True
    )
    thread.name = f"sarhad-job-{kind}-{job_id[:8]}"
    thread.start()
    return job_id


def _heartbeat(database: Database, job_id: str, stop: threading.Event) -> None:
    """Mark the job alive while its work runs, also through a long silent step (an XLSX is written
    whole before its first byte can be counted)."""
    while not stop.wait(HEARTBEAT_SECONDS):
        with database.write() as writer:
            job = writer.session.get(ConsoleJob, job_id)
            if job is not None:
                job.updated_at = utcnow()


def _run(app: Flask, database: Database, folder: Path, job_id: str, work: Work) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _finish(database, job_id, state="running")
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(database, job_id, stop), daemon=True).start()
    try:
        _work(app, database, folder, job_id, work)
    finally:
        stop.set()


def _work(app: Flask, database: Database, folder: Path, job_id: str, work: Work) -> None:
    try:
        with app.app_context():
            result = work(Progress(database, job_id, folder))
    except Problem as exc:
        _finish(database, job_id, state="failed", message=exc.message, ended=True)
    except Exception as exc:  # the thread must record every failure: nobody else will see it
        log.exception("console job %s failed", job_id)
        _finish(
            database, job_id, state="failed", message=f"Unexpected error: {type(exc).__name__}", ended=True
        )
    else:
        size = (folder / result.name).stat().st_size if result.name else None
        _finish(
            database,
            job_id,
            state="done",
            message=result.message,
            name=result.name,
            content_type=result.content_type,
            size=size,
            ended=True,
        )


def _finish(
    database: Database,
    job_id: str,
    *,
    state: str,
    message: str | None = None,
    name: str | None = None,
    content_type: str | None = None,
    size: int | None = None,
    ended: bool = False,
) -> None:
    with database.write() as writer:
        job = writer.session.get(ConsoleJob, job_id)
        if job is None:
            return
        job.state, job.updated_at = state, utcnow()
        if message is not None:
            job.message = message
        if name is not None:
            job.result_name, job.result_type, job.result_size = name, content_type, size
        if ended:
            job.finished_at = utcnow()


_last_sweep = 0.0
SWEEP_EVERY = 600.0  # seconds: pages that list jobs sweep at most this often (a sweep is a write)


def sweep_now_and_then(database: Database, data_dir: Path) -> None:
    """Sweep when this process has not for a while, so old files go even when no new job starts."""
    global _last_sweep
    if time.monotonic() - _last_sweep >= SWEEP_EVERY:
        _last_sweep = time.monotonic()
        sweep(database, data_dir)


def sweep(database: Database, data_dir: Path) -> None:
    """Delete old jobs with their files; a running job whose worker went silent is marked failed."""
    now = utcnow()
    with database.write() as writer:
        session = writer.session
        old = list(session.scalars(select(ConsoleJob).where(ConsoleJob.created_at < now - KEEP_FOR)))
        for job in old:
            session.delete(job)
        for job in session.scalars(
            select(ConsoleJob).where(ConsoleJob.state.in_(ACTIVE), ConsoleJob.updated_at < now - STALE_AFTER)
        ):
            job.state, job.finished_at = "failed", now
            job.message = "The server was restarted while this job ran; start it again."
    for job in old:  # after the commit: a row never points at a deleted file
        shutil.rmtree(folder_of(data_dir, job.id), ignore_errors=True)


def result_path(data_dir: Path, job: ConsoleJob) -> Path | None:
    if job.state != "done" or not job.result_name:
        return None
    path = folder_of(data_dir, job.id) / job.result_name
    return path if path.is_file() else None


def running(database: Database, kind: str) -> ConsoleJob | None:
    """A job of this kind still queued or running (for jobs that must not run twice at once)."""
    with database.read() as session:
        job = session.scalar(select(ConsoleJob).where(ConsoleJob.kind == kind, ConsoleJob.state.in_(ACTIVE)))
        if job is not None:
            session.expunge(job)
        return job
