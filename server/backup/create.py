"""A consistent snapshot of a running server, written as one encrypted backup file.

The database is copied first, as of one instant, while the server keeps taking submissions:

- SQLite through its online backup API (``sqlite3.Connection.backup``) in one step. In WAL mode this
  is one read transaction: writers go on, and the copy is the database as of its start.
- PostgreSQL by ``COPY … TO STDOUT`` of every table inside one ``REPEATABLE READ`` read-only
  transaction (one snapshot for all tables), through the server's own driver. Not ``pg_dump``: it must
  be at least the server's major version and be installed beside Sarhad, and its output names the
  schema, while COPY's text format round-trips every value exactly with whatever server answers.

Then every blob the *copied* database names is added: blobs are content-addressed and never change,
and a row is committed before its file is moved into place, so a file not yet in ``objects/`` is still
in its transaction's staging folder (or arrives within moments).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine

from server import audit
from server.backup import FORMAT, KEY_FILES, LEDGER_FILE, MANIFEST, SECRET_KEY_FILE
from server.backup.sealed import SealedWriter
from server.blobs import BlobMissing, BlobStore
from server.config import Settings
from server.db import Database

_BLOB_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    database: str
    revision: str
    blobs: int
    rows: int
    size: int


@dataclass
class _Snapshot:
    """The database copied to plain files in a private temporary folder."""

    kind: str
    revision: str
    files: list[tuple[str, Path]]  # (name in the archive, file)
    tables: list[dict[str, Any]]
    blobs: list[str]


def create_backup(database: Database, settings: Settings, output: Path, passphrase: bytes) -> BackupSummary:
    """Write the backup to ``output`` (whole or not at all: through ``output.part``, then renamed)."""
    # The plain copy lives in the data folder, as safe as the database itself, never beside the output
    # (a USB disk from which a deleted file can be read back).
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".backup-") as scratch:
        snapshot = _snapshot(database.engine, settings, Path(scratch))
        partial = output.with_name(output.name + ".part")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as raw:
                sealed = SealedWriter(raw, passphrase)
                with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT) as archive:  # type: ignore[call-overload]
                    _write(archive, snapshot, settings, database.blobs)
                sealed.close()
                raw.flush()
                os.fsync(raw.fileno())
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)
    return BackupSummary(
        output,
        snapshot.kind,
        snapshot.revision,
        len(snapshot.blobs),
        sum(t["rows"] for t in snapshot.tables),
        output.stat().st_size,
    )


def create_and_record(
    database: Database, settings: Settings, output: Path, passphrase: bytes
) -> BackupSummary:
    """A backup, then its line in the audit log (``backup.create``)."""
    summary = create_backup(database, settings, output, passphrase)
    with database.write() as writer:
        audit.record(
            writer.session,
            "backup.create",
            target_type="backup",
            target_id=output.name,
            path=str(output),
            bytes=summary.size,
            blobs=summary.blobs,
            rows=summary.rows,
            revision=summary.revision,
        )
    return summary


def _write(archive: tarfile.TarFile, snapshot: _Snapshot, settings: Settings, blobs: BlobStore) -> None:
    manifest = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": snapshot.kind,
        "revision": snapshot.revision,
        "tables": snapshot.tables,
        "blobs": len(snapshot.blobs),
    }
    _add_bytes(archive, MANIFEST, json.dumps(manifest, indent=1).encode())
    for name, path in snapshot.files:
        with path.open("rb") as fh:
            _add_stream(archive, name, fh, path.stat().st_size)
    _add_bytes(archive, f"keys/{SECRET_KEY_FILE}", settings.secret_key.encode())
    for key_file in KEY_FILES:
        if (settings.data_dir / key_file).exists():
            _add_bytes(archive, f"keys/{key_file}", (settings.data_dir / key_file).read_bytes())
    for sha256 in snapshot.blobs:
        with _open_blob(blobs, sha256) as fh:
            _add_stream(archive, f"blobs/{sha256}", fh, os.fstat(fh.fileno()).st_size)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    _add_stream(archive, name, io.BytesIO(data), len(data))


def _add_stream(archive: tarfile.TarFile, name: str, stream: BinaryIO, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = 0  # the same content gives the same archive
    archive.addfile(info, stream)


@contextmanager
def _open_blob(blobs: BlobStore, sha256: str) -> Iterator[BinaryIO]:
    """The stored file; a row committed an instant ago may still have its file in a staging folder."""
    deadline = time.monotonic() + _BLOB_WAIT_SECONDS
    while True:
        for candidate in (blobs.path(sha256), *blobs.incoming.glob(f"*/{sha256}")):
            try:
                fh = candidate.open("rb")
            except FileNotFoundError:
                continue
            with fh:
                yield fh
            return
        if time.monotonic() > deadline:
            raise BlobMissing(sha256)
        time.sleep(0.05)


def _snapshot(engine: Engine, settings: Settings, scratch: Path) -> _Snapshot:
    if engine.dialect.name == "sqlite":
        snapshot = _sqlite_snapshot(engine, scratch)
    else:
        snapshot = _postgresql_snapshot(engine, scratch)
    ledger = settings.data_dir / LEDGER_FILE
    if ledger.exists():
        copy = scratch / LEDGER_FILE
        _sqlite_copy(str(ledger), copy)
        snapshot.files.append((f"keys/{LEDGER_FILE}", copy))
    return snapshot


def _sqlite_copy(source: str, target: Path) -> None:
    src = sqlite3.connect(source, timeout=60)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one consistent read, writers are not held up (WAL)
    finally:
        dst.close()
        src.close()
    os.chmod(target, 0o600)


def _sqlite_snapshot(engine: Engine, scratch: Path) -> _Snapshot:
    source = engine.url.database
    assert source, "an SQLite URL names its file"
    copy = scratch / "sarhad.db"
    _sqlite_copy(source, copy)
    with sqlite3.connect(copy) as conn:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        tables = [
            {"name": n, "rows": conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]} for n in names
        ]
        blobs = [r[0] for r in conn.execute("SELECT sha256 FROM blob ORDER BY sha256")]
    conn.close()
    return _Snapshot("sqlite", revision, [("database/sarhad.db", copy)], tables, blobs)


def _postgresql_snapshot(engine: Engine, scratch: Path) -> _Snapshot:
    from psycopg import IsolationLevel

    files: list[tuple[str, Path]] = []
    tables: list[dict[str, Any]] = []
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        pg.rollback()
        pg.isolation_level = IsolationLevel.REPEATABLE_READ  # one snapshot for every table
        pg.read_only = True
        with pg.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            revision = cur.fetchone()[0]  # type: ignore[index]
            cur.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'alembic_version' ORDER BY tablename"
            )
            names = [r[0] for r in cur.fetchall()]
            for name in names:
                cur.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
                    (name,),
                )
                columns = [r[0] for r in cur.fetchall()]
                path = scratch / f"{name}.copy"
                rows = 0
                with path.open("wb") as out, cur.copy(f'COPY "{name}" TO STDOUT') as copy:
                    for chunk in copy:
                        out.write(chunk)
                        rows += bytes(chunk).count(b"\n")
                files.append((f"database/{name}.copy", path))
                tables.append({"name": name, "columns": columns, "rows": rows})
            cur.execute("SELECT sha256 FROM blob ORDER BY sha256")
            blobs = [r[0] for r in cur.fetchall()]
        pg.rollback()
    finally:
        pg.read_only = False
        pg.isolation_level = None
        raw.close()
    return _Snapshot("postgresql", revision, files, tables, blobs)
