"""Engine, a session per request, and the one place where a write request commits.

SQLite runs in WAL mode with ``synchronous=FULL`` so that an acknowledged commit survives a crash or a
power cut, and write transactions start with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the
busy timeout instead of failing when a read lock cannot be upgraded.

The write-ahead log stays bounded: SQLite's own checkpoint (every 1000 pages) copies it into the
database, and the log starts over once no reader still looks at an older snapshot (requests end their
read transaction before they wait: :func:`end_read`). As a safeguard against a long reader (an export
streaming for minutes), ``journal_size_limit`` cuts the file back after a complete checkpoint, and a write
that finds the log past the limit checkpoints it with ``TRUNCATE`` (giving up quickly if a reader is
still in the way: the next write tries again).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from server.blobs import BlobStore, StagedBlob, Staging
from server.models import Blob

P = ParamSpec("P")
R = TypeVar("R")
_WRITE_OPTION = "sarhad_write"
DEFAULT_WAL_LIMIT = 32 * 1024 * 1024
BUSY_TIMEOUT_MS = 60_000
CHECKPOINT_WAIT_MS = 100  # how long a TRUNCATE checkpoint waits for readers before it gives up
CHECKPOINT_RETRY_SECONDS = 5.0  # after a checkpoint a reader blocked: writes do not wait on it again soon
log = logging.getLogger(__name__)


def make_engine(url: str, wal_limit: int = DEFAULT_WAL_LIMIT) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
        _configure_sqlite(engine, wal_limit)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _configure_sqlite(engine: Engine, wal_limit: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute(f"PRAGMA journal_size_limit={int(wal_limit)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION)
        # Straight to the driver: every request begins a transaction, and SQLAlchemy's statement
        # machinery (exec_driver_sql) cost more than the BEGIN itself.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    wal_limit: int = DEFAULT_WAL_LIMIT
    # (when, WAL size to reach) of the last checkpoint a reader blocked; None when the last one worked
    _blocked_checkpoint: tuple[float, int] | None = field(default=None, init=False, repr=False)

    @classmethod
    def create(cls, url: str, blobs: BlobStore, wal_limit: int = DEFAULT_WAL_LIMIT) -> Database:
        engine = make_engine(url, wal_limit)
        return cls(engine, sessionmaker(engine, expire_on_commit=False), blobs, wal_limit)

    @functools.cached_property
    def wal_path(self) -> str | None:
        """The SQLite write-ahead log's file (None on PostgreSQL or an in-memory database)."""
        name = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not name or name == ":memory:":
            return None
        return name + "-wal"

    def wal_size(self) -> int:
        try:
            return os.path.getsize(self.wal_path) if self.wal_path else 0
        except OSError:
            return 0

    def checkpoint(self) -> bool:
        """Copy the whole write-ahead log into the database and truncate it; False when a reader of an
        older snapshot was still in the way after a short wait (nothing is lost: the next try does it)."""
        if self.wal_path is None:
            return True
        raw = self.engine.raw_connection()
        try:
            conn = raw.driver_connection
            conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            try:
                busy, _frames, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            raw.close()
        return not busy

    def _keep_wal_bounded(self) -> None:
        if self.wal_path is None:
            return
        size = self.wal_size()
        if size <= self.wal_limit:
            return
        # After a try a long reader (an export streaming for minutes) blocked, the next waits a few
        # seconds or another limit's growth, so that writes do not each pay the wait meanwhile.
        blocked = self._blocked_checkpoint
        if blocked and time.monotonic() < blocked[0] + CHECKPOINT_RETRY_SECONDS and size < blocked[1]:
            return
        if self.checkpoint():
            self._blocked_checkpoint = None
        else:
            self._blocked_checkpoint = (time.monotonic(), size + self.wal_limit)
            log.info("the write-ahead log is %d bytes; a reader delays its checkpoint", size)

    @contextmanager
    def write(self) -> Iterator[Writer]:
        """One write transaction with its staged blobs: commit, then publish the files."""
        session = self.sessions()
        staging = self.blobs.staging()
        try:
            session.connection(execution_options={_WRITE_OPTION: True})
            yield Writer(session, staging)
            session.commit()
        except BaseException:
            session.rollback()
            staging.discard()
            raise
        finally:
            session.close()
        # After the commit the files must never be discarded: if moving them fails, they stay staged
        # and recover() rolls them forward (their rows are committed).
        staging.publish()
        try:
            self._keep_wal_bounded()
        except Exception:  # the write has committed: housekeeping must never make it look failed
            log.exception("could not checkpoint the write-ahead log")

    @contextmanager
    def read(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
        finally:
            session.close()  # rolls back: nothing read here is ever committed

    def committed_blobs(self, shas: Iterable[str]) -> set[str]:
        wanted = list(shas)
        if not wanted:
            return set()
        with self.read() as session:
            return set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(wanted))))

    def recover_blobs(self) -> Any:
        return self.blobs.recover(self.committed_blobs)


@dataclass
class Writer:
    """The session and the blob staging of one write transaction."""

    session: Session
    staging: Staging

    def add_blob(self, staged: StagedBlob) -> str:
        """Record a staged file as a blob row (once per sha256) and return its sha256. Two transactions
        may store the same file at once (two devices sending the same photo, two forms with the same CSV):
        the second must not fail."""
        insert_if_new(self.session, Blob, ["sha256"], sha256=staged.sha256, md5=staged.md5, size=staged.size)
        return staged.sha256

    def store_bytes(self, data: bytes) -> str:
        return self.add_blob(self.staging.add_bytes(data))

    def store_stream(self, stream: Any) -> str:
        return self.add_blob(self.staging.add_stream(stream))


def insert_if_new(session: Session, model: type[Any], key: list[str], **values: Any) -> bool:
    """INSERT ... ON CONFLICT (key) DO NOTHING: whether the row was new. Neither fails nor overwrites
    when another transaction inserted the same key first."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=key)
    # RETURNING says whether a row went in (the driver's rowcount is not reliable for INSERT everywhere).
    return session.execute(statement.returning(getattr(model, key[0]))).first() is not None


def init_app(app: Flask, database: Database) -> None:
    app.extensions["sarhad.db"] = database
    app.teardown_appcontext(_close_request_session)


def database() -> Database:
    return current_app.extensions["sarhad.db"]  # type: ignore[no-any-return]


def session() -> Session:
    """The session of the current request: the write transaction's inside :func:`write_request`
    (put it outermost, so that authentication reads in the same transaction), else a read session
    that is never committed."""
    if "db_writer" in g:
        return g.db_writer.session  # type: ignore[no-any-return]
    if "db_session" not in g:
        g.db_session = database().sessions()
    return g.db_session  # type: ignore[no-any-return]


def writer() -> Writer:
    """The write transaction of the current request, opened by :func:`write_request`."""
    return g.db_writer  # type: ignore[no-any-return]


def write_request(view: Callable[P, R]) -> Callable[P, R]:
    """Run a view in one transaction, committed (and its files published) before the reply."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with database().write() as w:
            g.db_writer = w
            try:
                return view(*args, **kwargs)
            finally:
                g.pop("db_writer", None)

    return wrapper


def end_read() -> None:
    """End the current request's read transaction now; what it loaded stays readable (detached).

    Call it before a request waits — for the rest of a slow body, for its turn in the group commit.
    SQLite can restart its write-ahead log only when no reader still looks at an older snapshot: with
    a few devices sending, some request was always waiting inside its read transaction, so no
    checkpoint ever completed and ``sarhad.db-wal`` grew by hundreds of megabytes. A later
    :func:`session` call in the same request simply begins a new transaction."""
    sess = g.get("db_session")
    if sess is not None:
        sess.close()


def _close_request_session(_exc: BaseException | None) -> None:
    sess = g.pop("db_session", None)
    if sess is not None:
        sess.close()  # ends its transaction with a rollback: a request's read session never commits
