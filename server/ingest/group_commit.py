"""Group commit: the write jobs of concurrent requests share one transaction, so one fsync serves many.

A durable commit costs an fsync (SQLite's WAL with ``synchronous=FULL``, PostgreSQL's WAL), a few
milliseconds on ordinary disks, and SQLite runs one writer at a time: one transaction per submission caps
a store at a few hundred submissions a second however many devices send. Here a request queues its job
(a function of a :class:`~server.db.Writer`) and takes the process's leader lock. Whoever holds the lock
runs every job waiting at that moment, each in a savepoint of one transaction, commits once, and only
then hands out the results; the requests whose jobs were in that group find them done and may
acknowledge (201), because their rows are committed. While one group commits, the next one gathers.

- A lone request runs its own job in its own thread at once: no hand-over to another thread.
- A job that raises (a Problem, a bad XML) rolls back its own savepoint only; its caller gets the error.
- If the transaction fails as a whole (a deadlock on PostgreSQL between two processes' groups, a lost
  connection) it is run again, then each job alone, so that one job never fails because of another.
- On SQLite the leaders of all processes (gunicorn workers) take turns by an ``flock`` on a file in the
  blob store before ``BEGIN IMMEDIATE``: the lock passes to the next one the moment it is released,
  where SQLite's busy handler would sleep and poll.
- Jobs run in whichever request thread leads, so they must take everything from their ``Writer`` and
  their closure, never from the request context.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError

from server import file_locks
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
        self._changed = threading.Condition()  # guards the two below; notified after every group
        self._waiting: collections.deque[_Job[Any]] = collections.deque()
        self._leading = False
        self._sqlite = database.engine.dialect.name == "sqlite"
        self._lock_path = database.blobs.root / ".write.lock"

    def run(self, work: Callable[[Writer], T]) -> T:
        """Run ``work`` in a shared write transaction; return its result once that has committed."""
        job: _Job[T] = _Job(work)
        with self._changed:
            self._waiting.append(job)
            while self._leading and not job.future.done():
                self._changed.wait()
            if job.future.done():  # a leader took it into its group
                return job.future.result()
            self._leading = True
        try:
            while not job.future.done():  # ours is among the waiting ones, oldest first
                self._run_group(self._take_waiting())
                with self._changed:
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._leading = False
                self._changed.notify_all()  # a request whose job still waits leads next
        return job.future.result()

    def _take_waiting(self) -> list[_Job[Any]]:
        with self._changed:
            count = min(len(self._waiting), MAX_BATCH)
            return [self._waiting.popleft() for _ in range(count)]

    def _run_group(self, batch: list[_Job[Any]]) -> None:
        try:
            self._commit(batch)
        except BaseException as exc:  # even a dying thread settles the jobs of its group
            log.exception("group commit failed")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

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
            file_locks.lock(fd)
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
