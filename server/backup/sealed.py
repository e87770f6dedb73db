"""The encrypted container of a backup: a versioned header, then the archive in authenticated chunks.

Layout::

    MAGIC (15 bytes) | version (1) | log2(n) r p of scrypt (3) | salt (16) | check (32) | nonce prefix (7)
    then chunks:  length (4, big-endian) | AES-256-GCM ciphertext of up to CHUNK bytes + 16-byte tag

The passphrase goes through scrypt into 64 bytes: the first 32 are the AES key, the last 32 are stored
as ``check``, so a wrong passphrase is told apart from a changed file. Chunk *i* is sealed with the
nonce ``prefix | i (4 bytes) | last (1 byte)`` and the whole header as associated data (the "STREAM"
construction): reordering, dropping, truncating or appending chunks, or editing the header, all fail
authentication. The archive is streamed through, never held whole in memory.
"""

from __future__ import annotations

import hmac
import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"SARHAD-BACKUP\r\n"
VERSION = 1
CHUNK = 1024 * 1024
_TAG = 16
# scrypt with n = 2^16, r = 8 needs 64 MiB and about half a second: fine on a Raspberry Pi.
DEFAULT_LOG2_N = 16
_MAX_LOG2_N = 20  # a foreign header must not make us allocate gigabytes
_HEADER = struct.Struct(f">{len(MAGIC)}sBBBB16s32s7s")
_LENGTH = struct.Struct(">I")


class NotABackup(Exception):
    """The file is not a Sarhad backup (or one of a format this version does not know)."""


class WrongPassphrase(Exception):
    """The passphrase does not open this backup."""


class Tampered(Exception):
    """The file was changed, cut short or extended after it was written."""


def _derive(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> tuple[bytes, bytes]:
    derived = Scrypt(salt=salt, length=64, n=2**log2_n, r=r, p=p).derive(passphrase)
    return derived[:32], derived[32:]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class SealedWriter:
    """A write-only file object: what is written goes to ``out`` encrypted, chunk by chunk."""

    def __init__(self, out: BinaryIO, passphrase: bytes, log2_n: int = DEFAULT_LOG2_N) -> None:
        salt, prefix = os.urandom(16), os.urandom(7)
        key, check = _derive(passphrase, salt, log2_n, 8, 1)
        self._header = _HEADER.pack(MAGIC, VERSION, log2_n, 8, 1, salt, check, prefix)
        self._aead = AESGCM(key)
        self._prefix = prefix
        self._out = out
        self._buffer = bytearray()
        self._index = 0
        out.write(self._header)

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK:  # keep one chunk back: the last must carry the "last" flag
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def close(self) -> None:
        """Seal what is left as the last chunk (possibly empty); the file is then complete."""
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _seal(self, plain: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), plain, self._header)
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)
        self._index += 1


class SealedReader:
    """A read-only file object giving back the plain archive; raises on any change to the file."""

    def __init__(self, source: BinaryIO, passphrase: bytes) -> None:
        header = source.read(_HEADER.size)
        if len(header) < _HEADER.size or not header.startswith(MAGIC):
            raise NotABackup("this file is not a Sarhad backup")
        _magic, version, log2_n, r, p, salt, check, prefix = _HEADER.unpack(header)
        if version != VERSION:
            raise NotABackup(f"this backup has format version {version}; this Sarhad reads version {VERSION}")
        if not (10 <= log2_n <= _MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16):
            raise NotABackup("this backup's header is not one Sarhad writes")
        key, expected = _derive(passphrase, salt, log2_n, r, p)
        if not hmac.compare_digest(expected, check):
            raise WrongPassphrase("the passphrase does not open this backup")
        self._aead = AESGCM(key)
        self._header = header
        self._prefix = prefix
        self._source = source
        self._index = 0
        self._plain = b""
        self._offset = 0
        self._done = False

    def read(self, size: int = -1) -> bytes:
        parts = []
        wanted = size if size >= 0 else None
        while wanted is None or wanted > 0:
            if self._offset == len(self._plain) and (self._done or not self._next_chunk()):
                break
            take = (
                len(self._plain) - self._offset
                if wanted is None
                else min(wanted, len(self._plain) - self._offset)
            )
            parts.append(self._plain[self._offset : self._offset + take])
            self._offset += take
            if wanted is not None:
                wanted -= take
        return b"".join(parts)

    def _next_chunk(self) -> bool:
        length_bytes = self._source.read(_LENGTH.size)
        if len(length_bytes) < _LENGTH.size:
            raise Tampered("the backup ends too early (it was cut short)")
        (length,) = _LENGTH.unpack(length_bytes)
        if length > CHUNK + _TAG:
            raise Tampered("the backup was changed after it was written")
        sealed = self._source.read(length)
        if len(sealed) < length:
            raise Tampered("the backup ends too early (it was cut short)")
        plain = None
        for last in (False, True):
            try:
                plain = self._aead.decrypt(_nonce(self._prefix, self._index, last), sealed, self._header)
            except InvalidTag:
                continue
            self._done = last
            break
        if plain is None:
            raise Tampered("the backup was changed after it was written")
        if self._done and self._source.read(1):
            raise Tampered("the backup has data after its end")
        self._index += 1
        self._plain, self._offset = plain, 0
        return True

    def drain(self) -> None:
        """Read to the end, so that a cut or extended file is noticed even when the archive ended."""
        while self.read(CHUNK):
            pass
