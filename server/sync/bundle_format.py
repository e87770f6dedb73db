"""The USB bundle: one file, signed by the hub (Ed25519) and encrypted for central (X25519 + AES-GCM).

Layout::

    MAGIC
    4-byte length, header JSON (clear): format, centralKey, ephemeralKey, hubSigningKey, noncePrefix
    segments: 4-byte length, AES-256-GCM ciphertext of up to 1 MiB of the payload stream each
    64-byte Ed25519 signature by the hub over the sha256 of everything before it

The AES key is HKDF-SHA256 of the X25519 secret between a fresh ephemeral key and central's bundle key.
Each segment's nonce is the prefix and its number; its associated data binds the header, its number and
whether it is the last, so segments cannot be dropped, reordered or cut short unnoticed. The payload
stream is JSON lines (a ``{"blob": sha, "size": n}`` line is followed by n raw bytes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"SARHAD-BUNDLE/1\n"
SEGMENT = 1024 * 1024
SIGNATURE_BYTES = 64
_LEN = struct.Struct(">I")


class BundleRefused(Exception):
    """The bundle cannot be taken; the message says why in plain words."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _raw(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _aes_key(shared: bytes, ephemeral: bytes, central: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + central, info=b"sarhad bundle v1")
    return hkdf.derive(shared)


def _aad(header_sha: bytes, number: int, last: bool) -> bytes:
    return header_sha + struct.pack(">IB", number, int(last))


class BundleWriter:
    """Writes a bundle to ``out``: ``write()`` payload bytes, then ``close()`` to seal and sign."""

    def __init__(self, out: BinaryIO, central_bundle_key_b64: str, hub_key: Ed25519PrivateKey) -> None:
        central = X25519PublicKey.from_public_bytes(base64.b64decode(central_bundle_key_b64))
        ephemeral = X25519PrivateKey.generate()
        eph_raw = _raw(ephemeral.public_key())
        self._aes = AESGCM(_aes_key(ephemeral.exchange(central), eph_raw, _raw(central)))
        self._prefix = os.urandom(8)
        header = json.dumps(
            {
                "format": 1,
                "centralKey": central_bundle_key_b64,
                "ephemeralKey": _b64(eph_raw),
                "hubSigningKey": _b64(_raw(hub_key.public_key())),
                "noncePrefix": _b64(self._prefix),
            }
        ).encode("utf-8")
        self._header_sha = hashlib.sha256(header).digest()
        self._out, self._hub_key = out, hub_key
        self._digest = hashlib.sha256()
        self._pending = bytearray()
        self._number = 0
        self._emit(MAGIC + _LEN.pack(len(header)) + header)

    def _emit(self, data: bytes) -> None:
        self._digest.update(data)
        self._out.write(data)

    def _segment(self, plain: bytes, last: bool) -> None:
        nonce = self._prefix + struct.pack(">I", self._number)
        sealed = self._aes.encrypt(nonce, plain, _aad(self._header_sha, self._number, last))
        self._emit(_LEN.pack(len(sealed)) + sealed)
        self._number += 1

    def write(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) > SEGMENT:
            self._segment(bytes(self._pending[:SEGMENT]), last=False)
            del self._pending[:SEGMENT]

    def line(self, value: dict[str, Any]) -> None:
        self.write(json.dumps(value, separators=(",", ":")).encode("utf-8") + b"\n")

    def close(self) -> None:
        self._segment(bytes(self._pending), last=True)
        self._pending.clear()
        self._out.write(self._hub_key.sign(self._digest.digest()))


@dataclass
class Opened:
    header: dict[str, Any]
    hub_signing_key: str
    payload: Iterator[bytes]


def open_bundle(fh: BinaryIO, size: int, central_key: X25519PrivateKey) -> Opened:
    """Check the magic, that it was made for this central, and the hub's signature over the whole file;
    then decrypt lazily (each segment's tag is checked as it is read)."""
    if size < len(MAGIC) + 4 + SIGNATURE_BYTES or fh.read(len(MAGIC)) != MAGIC:
        raise BundleRefused("this file is not a Sarhad bundle")
    (header_len,) = _LEN.unpack(fh.read(4))
    if header_len > 64 * 1024:
        raise BundleRefused("this file is not a Sarhad bundle (its header is damaged)")
    header_bytes = fh.read(header_len)
    try:
        header = json.loads(header_bytes)
        central_raw = _raw(central_key.public_key())
        if base64.b64decode(header["centralKey"]) != central_raw:
            raise BundleRefused(
                "this bundle was made for another central server (it is encrypted for a different key)"
            )
        hub_public = Ed25519PublicKey.from_public_bytes(base64.b64decode(header["hubSigningKey"]))
        ephemeral = base64.b64decode(header["ephemeralKey"])
        prefix = base64.b64decode(header["noncePrefix"])
    except (ValueError, KeyError, TypeError):
        raise BundleRefused("this file is not a Sarhad bundle (its header is damaged)") from None
    body_end = size - SIGNATURE_BYTES
    digest = hashlib.sha256()
    fh.seek(0)
    remaining = body_end
    while remaining:
        chunk = fh.read(min(remaining, SEGMENT))
        if not chunk:
            raise BundleRefused("the bundle is cut short")
        digest.update(chunk)
        remaining -= len(chunk)
    signature = fh.read(SIGNATURE_BYTES)
    try:
        hub_public.verify(signature, digest.digest())
    except InvalidSignature:
        raise BundleRefused(
            "the bundle was changed after the hub made it (its signature does not match)"
        ) from None
    aes = AESGCM(
        _aes_key(central_key.exchange(X25519PublicKey.from_public_bytes(ephemeral)), ephemeral, central_raw)
    )
    header_sha = hashlib.sha256(header_bytes).digest()

    def segments() -> Iterator[bytes]:
        fh.seek(len(MAGIC) + 4 + header_len)
        number = 0
        while True:
            if fh.tell() >= body_end:
                raise BundleRefused("the bundle is cut short (its last part is missing)")
            (length,) = _LEN.unpack(fh.read(4))
            sealed = fh.read(length)
            last = fh.tell() == body_end
            nonce = prefix + struct.pack(">I", number)
            try:
                yield aes.decrypt(nonce, sealed, _aad(header_sha, number, last))
            except InvalidTag:
                raise BundleRefused(
                    "the bundle is damaged or was tampered with (a part fails its check)"
                ) from None
            if last:
                return
            number += 1

    return Opened(header, header["hubSigningKey"], segments())


class PayloadReader:
    """Reads JSON lines and raw byte runs from the decrypted segments."""

    def __init__(self, segments: Iterator[bytes]) -> None:
        self._segments = segments
        self._buffer = bytearray()
        self._done = False

    def _fill(self) -> bool:
        if self._done:
            return False
        try:
            self._buffer += next(self._segments)
        except StopIteration:
            self._done = True
            return False
        return True

    def line(self) -> dict[str, Any] | None:
        while b"\n" not in self._buffer:
            if not self._fill():
                if self._buffer:
                    raise BundleRefused("the bundle's contents end in the middle of a record")
                return None
        end = self._buffer.index(b"\n")
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        try:
            value = json.loads(raw)
        except ValueError:
            raise BundleRefused("the bundle's contents are not readable") from None
        if not isinstance(value, dict):
            raise BundleRefused("the bundle's contents are not readable")
        return value

    def chunks(self, size: int) -> Iterator[bytes]:
        """Exactly ``size`` bytes, in pieces."""
        left = size
        while left:
            if not self._buffer and not self._fill():
                raise BundleRefused("the bundle's contents end in the middle of a file")
            piece = bytes(self._buffer[:left])
            del self._buffer[: len(piece)]
            left -= len(piece)
            yield piece
