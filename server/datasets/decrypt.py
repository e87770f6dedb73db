"""Decryption where it is asked for: an export or report given a key's passphrase opens encrypted
submissions as it reads them. The plain text exists only in memory, one submission at a time, on its way
into the export; nothing decrypted is ever written to the database or the blob store.

A submission that opens but whose element signature does not match (its files were changed or swapped
after the device signed them) is still exported, with an issue saying so; one that does not open with
the key stays "not decrypted", also with an issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.blobs import BlobStore
from server.models import FormVersion, SubmissionAttachment, SubmissionVersion
from server.odk_encryption import Undecryptable, open_envelope, plain_name, read_envelope

SIGNATURE_MISMATCH = (
    "encryption: the submission's signature does not match its decrypted files "
    "(changed or swapped after the device signed them)"
)


@dataclass
class Plain:
    """One encrypted submission opened: its XML, media by plain name, and issues for ``_issues``."""

    xml: str
    media: dict[str, bytes]
    issues: list[str] = field(default_factory=list)


@dataclass
class Failed:
    """An encrypted submission the key could not open (it stays "not decrypted")."""

    issue: str


@dataclass
class Decryptor:
    """Opens encrypted submission versions with the private keys given (by their public half)."""

    session: Session
    blobs: BlobStore
    keys: Mapping[str, RSAPrivateKey]
    opened: int = 0
    _cache: tuple[int, Plain | Failed | None] | None = None
    # Each opened submission's AES key (32 bytes): a second pass (the zip's media/) skips the RSA step
    # and the signature check, which the first pass did.
    _aes_keys: dict[int, bytes] = field(default_factory=dict)

    def open(self, version_id: int) -> Plain | Failed | None:
        """The version decrypted; None when none of the keys is its form version's key."""
        if self._cache is not None and self._cache[0] == version_id:
            return self._cache[1]
        result = self._open(version_id)
        self._cache = (version_id, result)
        return result

    def media(self, version_id: int) -> dict[str, bytes]:
        """Only the media of a version, by plain name (the zip's ``media/``): with the AES key of an
        earlier :meth:`open` it needs no RSA step and no second signature check."""
        if self._cache is not None and self._cache[0] == version_id:
            cached = self._cache[1]
            return cached.media if isinstance(cached, Plain) else {}
        result = self._open(version_id, media_only=version_id in self._aes_keys)
        self._cache = (version_id, result)
        return result.media if isinstance(result, Plain) else {}

    def _open(self, version_id: int, media_only: bool = False) -> Plain | Failed | None:
        row = self.session.execute(
            select(SubmissionVersion.xml, FormVersion.public_key)
            .join(FormVersion, FormVersion.id == SubmissionVersion.form_version_id)
            .where(SubmissionVersion.id == version_id)
        ).one_or_none()
        if row is None or row[1] is None or row[1] not in self.keys:
            return None
        envelope_xml, public = row
        files = dict(
            self.session.execute(
                select(SubmissionAttachment.name, SubmissionAttachment.blob_sha256).where(
                    SubmissionAttachment.version_id == version_id
                )
            ).all()
        )

        def read(name: str) -> bytes | None:
            sha = files.get(name)
            if sha is None:
                return None
            with self.blobs.open(sha) as f:
                return f.read()

        try:
            opened = open_envelope(
                self.keys[public],
                read_envelope(envelope_xml),
                read,
                aes_key=self._aes_keys.get(version_id),
                media_only=media_only,
            )
        except Undecryptable as exc:
            return Failed(f"encryption: could not be decrypted: {exc}")
        if media_only:
            return Plain("", opened.media)
        self._aes_keys[version_id] = opened.aes_key
        issues = []
        if opened.signature_ok is False:
            issues.append(SIGNATURE_MISMATCH)
        if opened.missing:
            issues.append(f"encryption: files not received yet: {', '.join(map(plain_name, opened.missing))}")
        try:
            xml = opened.xml.decode("utf-8")
        except UnicodeDecodeError:
            return Failed("encryption: the decrypted submission is not UTF-8 text")
        self.opened += 1
        return Plain(xml, opened.media, issues)
