"""Content-addressed blob store on the local disk.

Layout under the root::

    objects/ab/abcdef…   one file per sha256, read-only, the name is the content's sha256
    incoming/<txn>/      files of one database transaction that is not yet committed

A write request *stages* its files in its own ``incoming/<txn>`` folder (streamed, fsynced), commits its
rows, and only then *publishes* the files into ``objects/``. The folder is held under an exclusive
``flock`` while its transaction runs; the lock dies with the process. So after a crash, ``recover()``
finds unlocked folders and rolls each file forward (its blob row was committed) or back (it was not):
a crash at any point leaves neither a row without its file nor a file without its row.

A shared object store (S3, MinIO) would implement the same four operations: stage, publish, open, list.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from server import file_locks

CHUNK = 1024 * 1024
_SHA256_LEN = 64


class BlobCorrupt(Exception):
    """A stored file no longer matches its sha256."""


class BlobMissing(Exception):
    """No stored file for a sha256 that the database names."""


@dataclass(frozen=True)
class StagedBlob:
    sha256: str
    md5: str
    size: int


@dataclass(frozen=True)
class RecoveryReport:
    rolled_forward: int = 0
    rolled_back: int = 0
    in_use: int = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.incoming = root / "incoming"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != _SHA256_LEN or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.objects / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def staging(self) -> Staging:
        return Staging(self)

    def open(self, sha256: str) -> BinaryIO:
        """A file object whose reads are checked against the sha256 when the end is reached."""
        try:
            fh = self.path(sha256).open("rb")
        except FileNotFoundError:
            raise BlobMissing(sha256) from None
        return _VerifyingReader(fh, sha256)  # type: ignore[return-value]

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as fh:
            return fh.read()

    def iter_stored(self) -> Iterator[str]:
        for sub in sorted(self.objects.iterdir()):
            if sub.is_dir():
                yield from sorted(p.name for p in sub.iterdir() if len(p.name) == _SHA256_LEN)

    def verify(self, sha256: str) -> bool:
        digest = hashlib.sha256()
        with self.path(sha256).open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == sha256

    def recover(self, committed: Callable[[Iterable[str]], set[str]]) -> RecoveryReport:
        """Finish or undo the staged files of transactions whose process died.

        ``committed`` answers which of the given sha256s have a committed blob row.
        """
        forward = back = in_use = 0
        for folder in sorted(self.incoming.iterdir()):
            lock = _try_lock(folder / ".lock")
            if lock is None:
                in_use += 1
                continue
            try:
                staged = [p for p in folder.iterdir() if len(p.name) == _SHA256_LEN]
                known = committed([p.name for p in staged])
                for file in staged:
                    if file.name in known:
                        self._place(file, file.name)
                        forward += 1
                    else:
                        back += 1
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                os.close(lock)
        return RecoveryReport(forward, back, in_use)

    def adopt(self, file: Path, sha256: str) -> None:
        """Move a file known to hold ``sha256`` into the store (a restored backup's files)."""
        self._place(file, sha256)

    def _place(self, staged_file: Path, sha256: str) -> None:
        target = self.path(sha256)
        if target.exists():
            staged_file.unlink(missing_ok=True)
            return
        target.parent.mkdir(exist_ok=True)
        os.chmod(staged_file, 0o444)
        os.replace(staged_file, target)
        _fsync_dir(target.parent)


def _try_lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` if no live process holds it, else None."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        return None
    if not file_locks.try_lock(fd):
        os.close(fd)
        return None
    return fd


@dataclass
class Staging:
    """The files of one transaction, held in ``incoming/<txn>`` until the transaction commits."""

    store: BlobStore
    folder: Path = field(init=False)
    staged: dict[str, StagedBlob] = field(default_factory=dict, init=False)
    _lock: int | None = field(default=None, init=False)

    def _ensure_folder(self) -> None:
        if self._lock is not None:
            return
        self.folder = self.store.incoming / uuid.uuid4().hex
        self.folder.mkdir()
        self._lock = _try_lock(self.folder / ".lock")
        if self._lock is None:  # pragma: no cover - a fresh uuid folder cannot be locked by others
            raise RuntimeError("could not lock a new staging folder")

    def add_stream(self, stream: BinaryIO) -> StagedBlob:
        """Copy a stream to disk chunk by chunk (never whole in memory), hashing as it goes."""
        self._ensure_folder()
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        part = self.folder / f"{uuid.uuid4().hex}.part"
        with part.open("wb") as out:
            while chunk := stream.read(CHUNK):
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        blob = StagedBlob(sha.hexdigest(), md5.hexdigest(), size)
        if blob.sha256 in self.staged:
            part.unlink()
        else:
            os.replace(part, self.folder / blob.sha256)
            self.staged[blob.sha256] = blob
        return blob

    def add_bytes(self, data: bytes) -> StagedBlob:
        import io

        return self.add_stream(io.BytesIO(data))

    def publish(self) -> None:
        """Move every staged file into the store; call only after the rows are committed."""
        if self._lock is None:
            return
        try:
            for sha256 in self.staged:
                self.store._place(self.folder / sha256, sha256)
        except BaseException:
            self._release()  # keep the folder: recover() finishes what is left
            raise
        self._close()

    def discard(self) -> None:
        if self._lock is None:
            return
        self._close()

    def _close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        self.staged.clear()


class _VerifyingReader:
    """Wraps a blob file; raises BlobCorrupt at end of file when the content hash differs."""

    def __init__(self, fh: BinaryIO, sha256: str) -> None:
        self._fh = fh
        self._sha256 = sha256
        self._digest = hashlib.sha256()
        self._checked = False

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._digest.update(data)
        if (not data or size < 0) and not self._checked:
            self._checked = True
            if self._digest.hexdigest() != self._sha256:
                raise BlobCorrupt(self._sha256)
        return data

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> _VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk
