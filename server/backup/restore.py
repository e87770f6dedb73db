"""A backup back into an empty data folder and database.

The whole file is decrypted and checked into a scratch folder inside the target data folder first;
only when every chunk has authenticated (and the end is where the writer put it) does anything reach
the database or the blob store. The database goes in before the files, in one transaction on
PostgreSQL, so a failure leaves the target as empty as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine, inspect, make_url, text

from server import migrate
from server.backup import FORMAT, KEY_FILES, LEDGER_FILE, MANIFEST, SECRET_KEY_FILE
from server.backup.sealed import CHUNK, NotABackup, SealedReader, Tampered
from server.blobs import BlobStore
from server.config import Settings
from server.db import make_engine
from server.models import Base

_BLOB_NAME = re.compile(r"^blobs/[0-9a-f]{64}$")
_TABLE_NAME = re.compile(r"^database/([a-z_][a-z0-9_]*)\.copy$")
_KEY_NAMES = {f"keys/{name}" for name in (SECRET_KEY_FILE, *KEY_FILES, LEDGER_FILE)}


class TargetNotEmpty(Exception):
    """The data folder or database to restore into already holds something (or is of another kind)."""


@dataclass(frozen=True)
class RestoreSummary:
    database: str
    revision: str
    created: str
    blobs: int
    rows: int


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def check_target_empty(settings: Settings) -> None:
    """Refuse a target holding any row, stored file or key: a restore never overwrites."""
    data_dir, url = settings.data_dir, settings.sqlalchemy_url
    objects = settings.blob_dir / "objects"
    if objects.is_dir() and any(p.is_file() for p in objects.rglob("*")):
        raise TargetNotEmpty(f"the blob store {settings.blob_dir} already holds files")
    for name in (*KEY_FILES, LEDGER_FILE):
        if (data_dir / name).exists():
            raise TargetNotEmpty(f"{data_dir / name} already exists")
    if is_sqlite(url):
        path = Path(make_url(url).database or "")
        if path.exists():
            with sqlite3.connect(path) as conn:
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                _refuse_rows(names, lambda n: conn.execute(f'SELECT 1 FROM "{n}" LIMIT 1').fetchone())
            conn.close()
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            _refuse_rows(names, lambda n: conn.execute(text(f'SELECT 1 FROM "{n}" LIMIT 1')).first())
    finally:
        engine.dispose()


def _refuse_rows(names: list[str], first_row: Any) -> None:
    for name in names:
        if name != "alembic_version" and first_row(name) is not None:
            raise TargetNotEmpty(f"the database already holds data (table {name})")


def restore_backup(source: Path, passphrase: bytes, settings: Settings) -> RestoreSummary:
    check_target_empty(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=settings.data_dir, prefix=".restore-"))
    try:
        with source.open("rb") as raw:
            reader = SealedReader(raw, passphrase)
            manifest = _unpack(reader, scratch, settings.sqlalchemy_url)
            reader.drain()  # the last chunk must be there, and nothing after it
        if is_sqlite(settings.sqlalchemy_url):
            _restore_sqlite(scratch / "database" / "sarhad.db", settings.sqlalchemy_url)
        else:
            _restore_postgresql(scratch / "database", manifest, settings.sqlalchemy_url)
        migrate.upgrade(settings.sqlalchemy_url)  # a backup of an older Sarhad reaches this one's schema
        blobs = _place_files(scratch, settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return RestoreSummary(
        manifest["database"],
        manifest["revision"],
        manifest["created"],
        blobs,
        sum(int(t["rows"]) for t in manifest["tables"]),
    )


def _unpack(reader: SealedReader, scratch: Path, url: str) -> dict[str, Any]:
    manifest: dict[str, Any] | None = None
    blobs = 0
    with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            if manifest is None:
                if member.name != MANIFEST or not member.isfile():
                    raise NotABackup("the backup does not start with its manifest")
                manifest = _read_manifest(archive.extractfile(member), url)  # type: ignore[arg-type]
                continue
            name = member.name
            known = name == "database/sarhad.db" or _TABLE_NAME.match(name) or name in _KEY_NAMES
            if not member.isfile() or not (known or _BLOB_NAME.match(name)):
                raise NotABackup(f"unexpected entry in the backup: {name!r}")
            target = scratch / name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = _copy(archive.extractfile(member), target)  # type: ignore[arg-type]
            if _BLOB_NAME.match(name):
                if digest != name.removeprefix("blobs/"):
                    raise Tampered(f"stored file {name} does not match its hash")
                blobs += 1
    if manifest is None:
        raise NotABackup("the backup is empty")
    if blobs != manifest["blobs"]:
        raise Tampered(f"the backup lists {manifest['blobs']} stored files but holds {blobs}")
    return manifest


def _read_manifest(stream: BinaryIO, url: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(stream.read())
    if manifest.get("format") != FORMAT:
        raise NotABackup(f"backup format {manifest.get('format')!r} is not one this Sarhad reads")
    kind = "sqlite" if is_sqlite(url) else "postgresql"
    if manifest["database"] != kind:
        raise TargetNotEmpty(
            f"this is a backup of a {manifest['database']} database; the target is {kind} "
            "(set SARHAD_DATABASE_URL to a database of the same kind)"
        )
    return manifest


def _copy(stream: BinaryIO, target: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _restore_sqlite(copy: Path, url: str) -> None:
    target = Path(make_url(url).database or "")
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (target, target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        leftover.unlink(missing_ok=True)  # an empty, migrated database: checked above
    shutil.move(copy, target)


def _restore_postgresql(folder: Path, manifest: dict[str, Any], url: str) -> None:
    engine = make_engine(url)
    try:
        _prepare_schema(engine, url, manifest["revision"])
        order = [t.name for t in Base.metadata.sorted_tables]  # parents before children
        tables = sorted(
            manifest["tables"], key=lambda t: order.index(t["name"]) if t["name"] in order else 999
        )
        raw = engine.raw_connection()
        try:
            pg = raw.driver_connection
            assert pg is not None
            with pg.transaction(), pg.cursor() as cur:
                foreign_keys = _drop_foreign_keys(cur)
                for table in tables:
                    columns = ", ".join(f'"{c}"' for c in table["columns"])
                    with (
                        (folder / f"{table['name']}.copy").open("rb") as fh,
                        cur.copy(f'COPY "{table["name"]}" ({columns}) FROM STDIN') as copy,
                    ):
                        while chunk := fh.read(CHUNK):
                            copy.write(chunk)
                for table_name, name, definition in foreign_keys:  # checked again over all the rows
                    cur.execute(f'ALTER TABLE "{table_name}" ADD CONSTRAINT "{name}" {definition}')
                _advance_sequences(cur)
        finally:
            raw.close()
    finally:
        engine.dispose()


def _prepare_schema(engine: Engine, url: str, revision: str) -> None:
    """The target's tables at the backup's schema revision (an empty migrated database is fine)."""
    with engine.connect() as conn:
        names = inspect(conn).get_table_names()
        current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() if names else None
    if current is None:
        migrate.upgrade(url, revision, engine)
    elif current != revision:
        raise TargetNotEmpty(
            f"the target database is at schema {current}, the backup at {revision}: "
            "restore into a database with no tables"
        )


def _drop_foreign_keys(cur: Any) -> list[tuple[str, str, str]]:
    """Drop the schema's foreign keys for the load, as pg_dump's output does: some point both ways
    (a form names its current version, each version its form), so no table order satisfies them."""
    cur.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = current_schema()"
    )
    found = [(table.strip('"'), name, definition) for table, name, definition in cur.fetchall()]
    for table, name, _definition in found:
        cur.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    return found


def _advance_sequences(cur: Any) -> None:
    """Ids handed out after the restore continue after the restored ones."""
    cur.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND (column_default LIKE 'nextval%%' OR is_identity = 'YES')"
    )
    for table, column in cur.fetchall():
        cur.execute(
            "SELECT setval(pg_get_serial_sequence(%s, %s), "
            f'COALESCE((SELECT max("{column}") FROM "{table}"), 0) + 1, false)',
            (f'"{table}"', column),
        )


def _place_files(scratch: Path, settings: Settings) -> int:
    keys = scratch / "keys"
    if keys.is_dir():
        for path in keys.iterdir():
            os.replace(path, settings.data_dir / path.name)  # the secret key replaces a generated one
    store = BlobStore(settings.blob_dir)
    placed = 0
    blobs = scratch / "blobs"
    if blobs.is_dir():
        for path in sorted(blobs.iterdir()):
            store.adopt(path, path.name)
            placed += 1
    return placed
