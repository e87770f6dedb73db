"""Resumable blob uploads by content hash, in chunks.

A hub first asks where an upload stands (``start``: creates the session, or says the blob is already
here), then appends chunks, each with the offset it starts at. A chunk is written to its own temporary
file *before* the database transaction opens (a slow link must not hold the write lock), then appended
to ``DATA_DIR/sync-uploads/<hub>-<sha256>.part`` and the confirmed offset committed in one short
transaction. When the last byte arrives the file's sha256 is checked and it becomes an ordinary blob.
A chunk cut short by the link — closed cleanly, reset, or silent past an idle limit — is kept as far
as it arrived (its bytes are a prefix of what the hub sent, and the whole file's sha256 is checked at
the end): the next attempt asks for the offset and continues there, so a cut costs only the bytes that
were still on the way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session
from werkzeug.exceptions import ClientDisconnected

from server import audit, errors
from server.db import Database
from server.models import Blob, Hub, SyncUpload, utcnow
from server.sync.holdings import lock_hub

COPY = 256 * 1024
SHA256_HEX = set("0123456789abcdef")


@dataclass(frozen=True)
class UploadState:
    sha256: str
    size: int
    received: int
    complete: bool

    def as_json(self) -> dict[str, object]:
        return {"sha256": self.sha256, "size": self.size, "offset": self.received, "complete": self.complete}


def check_sha256(value: str) -> str:
    if len(value) != 64 or not set(value) <= SHA256_HEX:
        raise errors.bad_request("A blob is named by the lowercase hex sha256 of its content.", sha256=value)
    return value


def upload_dir(data_dir: Path) -> Path:
    folder = data_dir / "sync-uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _part(data_dir: Path, hub: Hub, sha256: str) -> Path:
    return upload_dir(data_dir) / f"{hub.id}-{sha256}.part"


def start(session: Session, data_dir: Path, hub: Hub, sha256: str, size: int) -> UploadState:
    """Open (or report) the upload of a blob of ``size`` bytes."""
    check_sha256(sha256)
    if size < 0:
        raise errors.bad_request("A blob's size cannot be negative.")
    blob = session.get(Blob, sha256)
    if blob is not None:
        return UploadState(sha256, blob.size, blob.size, True)
    upload = session.get(SyncUpload, (hub.id, sha256))
    if upload is not None and upload.size != size:
        # The same content cannot have two sizes: the earlier session was wrong; start over.
        session.delete(upload)
        session.flush()
        upload = None
    if upload is None:
        _part(data_dir, hub, sha256).unlink(missing_ok=True)
        upload = SyncUpload(hub_id=hub.id, sha256=sha256, size=size, received=0)
        session.add(upload)
        session.flush()
    return UploadState(sha256, upload.size, upload.received, False)


def status(session: Session, hub: Hub, sha256: str) -> UploadState:
    check_sha256(sha256)
    blob = session.get(Blob, sha256)
    if blob is not None:
        return UploadState(sha256, blob.size, blob.size, True)
    upload = session.get(SyncUpload, (hub.id, sha256))
    if upload is None:
        raise errors.not_found(f"No upload of {sha256} is under way; start it with POST /v1/sync/uploads.")
    return UploadState(sha256, upload.size, upload.received, False)


@dataclass(frozen=True)
class ChunkBody:
    """A chunk's request body as the WSGI server hands it over.

    ``stream`` is werkzeug's stream of the body. Under gunicorn, ``raw`` is gunicorn's own input under it,
    which after a cut may still hold bytes that arrived before it (gunicorn gathers a read in a buffer the
    error skips past), and ``sock`` is the connection."""

    stream: BinaryIO
    raw: BinaryIO | None = None
    sock: socket.socket | None = None

    @contextlib.contextmanager
    def idle_limit(self, seconds: int) -> Iterator[None]:
        """End the body when nothing more arrives for ``seconds``, as a cut.

        A link that dies without a reset (a mobile network dropping out) sends nothing more, and
        gunicorn's threads read bodies with no timeout: the read would wait for ever, holding a thread,
        and what did arrive would never be kept. (``sarhad serve`` passes only whole bodies, after its own
        channel timeout, and has no socket here.)"""
        if self.sock is None:
            yield
            return
        before = self.sock.gettimeout()
        self.sock.settimeout(seconds)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # the link may be gone by now
                self.sock.settimeout(before)

    def leftovers(self, out: BinaryIO, room: int) -> int:
        """After a cut, move what the server still holds of the body to ``out``: bytes moved."""
        if self.raw is None:
            return 0
        if self.sock is not None:
            # After a timeout the socket would make each read wait again, and gunicorn gives back what it
            # buffered only at end of file: end the reading side (nothing is sent on the wire).
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RD)
        moved = 0
        with contextlib.suppress(OSError, ValueError):
            while moved < room and (piece := self.raw.read(min(COPY, room - moved))):
                out.write(piece)
                moved += len(piece)
        return moved


def _receive(body: ChunkBody, target: Path, limit: int) -> tuple[int, bool]:
    """Copy the request body to ``target`` (at most ``limit`` bytes): (bytes, whether the body was cut)."""
    size = 0
    with target.open("wb") as out:
        while True:
            try:
                chunk = body.stream.read(COPY)
            # A clean close comes as werkzeug's ClientDisconnected (the body ended short); a reset (RST,
            # what mobile networks and proxies send) or a socket timeout as an OSError from the server's
            # read. Either way what arrived is a prefix of what the hub sent, and it is kept.
            except (ClientDisconnected, OSError):
                return size + body.leftovers(out, limit - size), True
            if not chunk:
                return size, False
            size += len(chunk)
            if size > limit:
                raise errors.too_large(limit)
            out.write(chunk)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def append(
    database: Database,
    data_dir: Path,
    hub_id: int,
    sha256: str,
    offset: int,
    body: ChunkBody,
    limit: int,
    size: int | None = None,
) -> UploadState:
    """Append one chunk that starts at ``offset``; a wrong offset is a 409 naming the right one.

    With ``size``, a first chunk (offset 0) opens the upload itself: a small file then needs one
    request instead of two (each round trip counts on a 300 ms link)."""
    check_sha256(sha256)
    folder = upload_dir(data_dir)
    chunk = folder / f"{hub_id}-{sha256}.{uuid.uuid4().hex}.chunk"
    corrupt = False
    try:
        length, cut = _receive(body, chunk, limit)
        if cut and length == 0:
            raise errors.bad_request("The chunk was cut before any of it arrived.")
        with database.write() as writer:
            session = writer.session
            hub = session.get(Hub, hub_id)
            assert hub is not None
            lock_hub(session, hub)
            blob = session.get(Blob, sha256)
            if blob is not None:
                return UploadState(sha256, blob.size, blob.size, True)
            upload = session.get(SyncUpload, (hub.id, sha256))
            if upload is None and size is not None and offset == 0:
                _part(data_dir, hub, sha256).unlink(missing_ok=True)
                upload = SyncUpload(hub_id=hub.id, sha256=sha256, size=size, received=0)
                session.add(upload)
                session.flush()
            if upload is None:
                raise errors.not_found(
                    f"No upload of {sha256} is under way; start it with POST /v1/sync/uploads."
                )
            if offset != upload.received:
                raise errors.upload_offset(
                    f"This chunk starts at byte {offset} but central has confirmed {upload.received} bytes; "
                    "send from there.",
                    offset=upload.received,
                )
            if offset + length > upload.size:
                raise errors.bad_request(
                    f"The chunk goes past the announced size ({upload.size} bytes).", size=upload.size
                )
            part = _part(data_dir, hub, sha256)
            # Bytes past the confirmed offset are from a chunk whose commit never happened: cut them.
            with part.open("r+b" if part.exists() else "w+b") as out:
                out.truncate(offset)
                out.seek(offset)
                with chunk.open("rb") as src:
                    shutil.copyfileobj(src, out, COPY)
                out.flush()
                os.fsync(out.fileno())
            upload.received = offset + length
            upload.updated_at = utcnow()
            partial = upload.received < upload.size
            if partial:
                state = UploadState(sha256, upload.size, upload.received, False)
            else:
                session.delete(upload)
                corrupt = _sha256_of(part) != sha256  # if so: commit the deletion, then refuse
                if not corrupt:
                    with part.open("rb") as fh:
                        writer.store_stream(fh)
                    audit.record(
                        session,
                        "sync.blob",
                        target_type="hub",
                        target_id=hub.id,
                        hub=hub.name,
                        sha256=sha256,
                        size=upload.size,
                    )
                state = UploadState(sha256, upload.size, upload.size, True)
        if partial and cut:  # what arrived is committed; nobody is listening for this answer
            raise errors.bad_request(
                f"The chunk was cut short; central kept what arrived: continue from byte {state.received}.",
                offset=state.received,
            )
        if partial:
            return state
        _part(data_dir, hub, sha256).unlink(missing_ok=True)
        if corrupt:
            raise errors.unprocessable(
                "The uploaded bytes do not match their sha256; the upload was discarded, start it again.",
                sha256=sha256,
            )
        return state
    finally:
        with contextlib.suppress(FileNotFoundError):
            chunk.unlink()
