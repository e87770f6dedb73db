"""Group commit: the write jobs of concurrent requests share one transaction, so one fsync serves many.

A durable commit costs an fsync (SQLite's WAL with ``synchronous=FULL``, PostgreSQL's WAL), a few
milliseconds on ordinary disks, and SQLite runs one writer at a time: one transaction per submission caps
a store at a few hundred submissions a second however many devices send. Here each process has one
committer thread. A request hands it a job (a function of a :class:`~server.db.Writer`) and waits; the
committer takes every job waiting at that moment, runs each in a savepoint of one transaction, commits
once, and only then wakes the requests, which may acknowledge (201) because their rows are committed.

- A job that raises (a Problem, a bad XML) rolls back its own savepoint only; its caller gets the error.
- If the transaction fails as a whole (a deadlock on PostgreSQL between two processes' batches, a lost
  connection) it is run again, then each job alone, so that one job never fails because of another.
- On SQLite the committers of all processes (gunicorn workers) take turns by an ``flock`` on a file in
  the blob store before ``BEGIN IMMEDIATE``: the lock passes to the next one the moment it is released,
  where SQLite's busy handler would sleep and poll.
- A lone request pays nothing extra: the committer starts its transaction as soon as a job arrives.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError

from server.db import Database, Writer

log = logging.getLogger(__name__)
T = TypeVar("T")
# Errors after which the transaction itself is unusable (a deadlock with another process's group, a lost
# connection): the group is tried again. Others (a Problem, a unique key) belong to one job's savepoint.
_TRANSACTION_ERRORS = (OperationalError, InterfaceError, InternalError)
MAX_BATCH = 64
BATCH_ATTEMPTS = 3


@dataclass
class _Job(Generic[T]):
    work: Callable[[Writer], T]
    future: Future[T] = field(default_factory=Future)


class GroupCommitter:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._queue: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pid = os.getpid()
        self._sqlite = database.engine.dialect.name == "sqlite"
        self._lock_path = database.blobs.root / ".write.lock"

    def run(self, work: Callable[[Writer], T]) -> T:
        """Run ``work`` in a shared write transaction; return its result once that has committed."""
        job: _Job[T] = _Job(work)
        self._ensure_thread()
        self._queue.put(job)
        return job.future.result()

    def _ensure_thread(self) -> None:
        # Started on first use, in the process that uses it (gunicorn forks workers after import).
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._loop, name="sarhad-group-commit", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit(batch)
            except BaseException as exc:  # never let the committer die: fail the batch's jobs instead
                log.exception("group commit failed")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _commit(self, batch: list[_Job[Any]]) -> None:
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                outcomes = self._transaction(batch)
            except DBAPIError as exc:  # the transaction as a whole: deadlock, serialization, connection
                log.warning("a group of %d writes failed (%s), attempt %d", len(batch), exc.orig, attempt)
                continue
            for job, (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
            return
        # Still failing together: each alone, so that one job cannot sink the others.
        for job in batch:
            try:
                (ok, value), *_ = self._transaction([job])
            except BaseException as exc:
                job.future.set_exception(exc)
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _transaction(self, batch: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        if len(batch) == 1:  # alone, the transaction is the job's own: no savepoint needed
            try:
                with self._writer_turn(), self.database.write() as writer:
                    value = batch[0].work(writer)
            except _TRANSACTION_ERRORS:
                raise
            except Exception as exc:
                return [(False, exc)]
            return [(True, value)]
        outcomes: list[tuple[bool, Any]] = []
        with self._writer_turn(), self.database.write() as writer:
            for job in batch:
                savepoint = writer.session.begin_nested()
                try:
                    value = job.work(writer)
                    savepoint.commit()
                    outcomes.append((True, value))
                except _TRANSACTION_ERRORS:
                    raise  # the transaction may be unusable: the whole group again
                except Exception as exc:
                    savepoint.rollback()
                    outcomes.append((False, exc))
        return outcomes

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        if not self._sqlite:
            yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


_committers_lock = threading.Lock()
_EXTENSION = "sarhad.group_commit"


def committer_for(extensions: dict[str, Any], database: Database) -> GroupCommitter:
    """The committer of an application (kept in ``app.extensions``)."""
    with _committers_lock:
        found = extensions.get(_EXTENSION)
        if found is None or found.database is not database:
            found = extensions[_EXTENSION] = GroupCommitter(database)
        return found  # type: ignore[no-any-return]
