"""Central's sync keys, generated on first use and kept in the data dir (owner-readable only).

- An Ed25519 *signing* key: central signs each hub's completeness statement with it, so that a
  coordinator can show the statement to someone else, who checks it with the public key.
- An X25519 *bundle* key: hubs encrypt USB bundles for central with its public half.

Every web server of one central must share the data dir (or these two files), like ``secret_key``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

SIGNING_KEY_FILE = "sync_signing_key.pem"
BUNDLE_KEY_FILE = "sync_bundle_key.pem"


def _stored_pem(path: Path, generate: bytes) -> bytes:
    """The PEM at ``path``, written from ``generate`` first when absent; two workers agree on one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(generate)
            fh.flush()
            os.fsync(fh.fileno())
        # link() refuses to replace: when two processes race, both then read the winner's key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
    return path.read_bytes()


def _pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def signing_key(data_dir: Path) -> Ed25519PrivateKey:
    pem = _stored_pem(data_dir / SIGNING_KEY_FILE, _pem(Ed25519PrivateKey.generate()))
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{SIGNING_KEY_FILE} in the data dir is not an Ed25519 key")
    return key


def bundle_key(data_dir: Path) -> X25519PrivateKey:
    pem = _stored_pem(data_dir / BUNDLE_KEY_FILE, _pem(X25519PrivateKey.generate()))
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, X25519PrivateKey):
        raise ValueError(f"{BUNDLE_KEY_FILE} in the data dir is not an X25519 key")
    return key


def raw_public_b64(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    """The public half as base64 of its 32 raw bytes (what clients pin and verify with)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def verify_signature(public_b64: str, signature_b64: str, message: bytes) -> bool:
    """Whether ``signature_b64`` is an Ed25519 signature of ``message`` by ``public_b64``."""
    from cryptography.exceptions import InvalidSignature

    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
        public.verify(base64.b64decode(signature_b64), message)
    except (InvalidSignature, ValueError):
        return False
    return True
