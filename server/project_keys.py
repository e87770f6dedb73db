"""Managed encryption, as ODK Central offers it: a project's RSA key pair, its private half locked by a
passphrase that the server never keeps.

Turning it on (:func:`enable_managed_encryption`) makes an RSA-2048 key pair, stores the public key as is
and the private key (PKCS#8 DER) encrypted with AES-256-GCM under a key derived from the passphrase with
PBKDF2-HMAC-SHA256 (600,000 iterations, a random 16-byte salt; the count is stored with the key so it can
be raised later). Why PBKDF2 and GCM: PBKDF2-SHA256 at this count is what OWASP recommends today and needs
no memory beyond a few bytes, so unlocking works the same on a Raspberry Pi hub as at the centre (scrypt
or argon2 at a useful cost want tens of MB per attempt); GCM authenticates the ciphertext, so a wrong
passphrase is told apart with certainty instead of by a padding accident (ODK Central uses CBC).

Every form of the project is then published again with the public key (a new version, Central's
``[encrypted:…]`` suffix, so devices fetch it), and so is every form published later. It cannot be
turned off: data already encrypted needs the key whatever happens, and a quiet switch back to plain text
would make tablets send answers in the clear without anyone deciding so.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, errors
from server.forms.xform import with_public_key
from server.models import Form, FormMedia, FormVersion, Project, ProjectKey, User, utcnow

MIN_PASSPHRASE = 10  # as ODK Central
KDF_ITERATIONS = 600_000
KDF_NAME = "pbkdf2-sha256"
CIPHER_NAME = "aes-256-gcm"
FEATURE = "managed encryption"


def _derive(passphrase: str, salt: bytes, iterations: int) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    return kdf.derive(passphrase.encode("utf-8"))


def lock_private_key(private_key: rsa.RSAPrivateKey, passphrase: str) -> dict[str, object]:
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, nonce = os.urandom(16), os.urandom(12)
    ciphertext = AESGCM(_derive(passphrase, salt, KDF_ITERATIONS)).encrypt(nonce, der, b"sarhad-project-key")
    return {
        "kdf": KDF_NAME,
        "iterations": KDF_ITERATIONS,
        "cipher": CIPHER_NAME,
        "salt": base64.b64encode(salt).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }


def unlock(key: ProjectKey, passphrase: str) -> rsa.RSAPrivateKey:
    """The private key, or 400.12 when the passphrase is wrong."""
    box = key.private
    if not key.managed or box.get("kdf") != KDF_NAME or box.get("cipher") != CIPHER_NAME:
        raise errors.undecryptable(f"Key {key.id} is not a key this server can unlock.", keyId=key.id)
    try:
        secret = _derive(passphrase, base64.b64decode(str(box["salt"])), int(str(box["iterations"])))
        der = AESGCM(secret).decrypt(
            base64.b64decode(str(box["nonce"])),
            base64.b64decode(str(box["ciphertext"])),
            b"sarhad-project-key",
        )
    except InvalidTag:
        raise errors.undecryptable(f"The passphrase of key {key.id} is wrong.", keyId=key.id) from None
    private = serialization.load_der_private_key(der, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return private


def public_base64(private_key: rsa.RSAPrivateKey) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def version_suffix() -> str:
    """Central's ``[encrypted:<6-byte epoch milliseconds, base64>]``: a new version for every form."""
    now = int(time.time() * 1000).to_bytes(6, "big")
    return f"[encrypted:{base64.b64encode(now).decode()}]"


def project_key(session: Session, project: Project) -> ProjectKey | None:
    return session.get(ProjectKey, project.key_id) if project.key_id is not None else None


def encrypted_xml(xml: str, key: ProjectKey, version: str) -> tuple[str, str]:
    """The XForm with the project's key and its new version: (xml, version)."""
    new_version = f"{version}{key.version_suffix}"
    if len(new_version) > 255:
        raise errors.invalid_form("The form version is too long to add the encryption suffix to.")
    return with_public_key(xml, key.public, new_version, max_bytes=len(xml.encode()) + 4096), new_version


def enable_managed_encryption(
    session: Session, project: Project, passphrase: str | None, hint: str | None, actor: User | None, via: str
) -> ProjectKey:
    """Make the project's key and publish every form with it (in the caller's write transaction)."""
    if project.key_id is not None:
        raise errors.already_active(FEATURE)
    if not passphrase:
        raise errors.missing_parameter("passphrase")
    if len(passphrase) < MIN_PASSPHRASE:
        raise errors.passphrase_too_short(MIN_PASSPHRASE)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = ProjectKey(
        project_id=project.id,
        public=public_base64(private),
        private=lock_private_key(private, passphrase),
        managed=True,
        hint=hint or None,
        version_suffix=version_suffix(),
        created_by_id=actor.id if actor else None,
    )
    session.add(key)
    session.flush()
    project.key_id = key.id
    forms = session.scalars(
        select(Form).where(Form.project_id == project.id, Form.deleted_at.is_(None))
    ).all()
    changed = [_encrypt_form(session, form, key, actor) for form in forms]
    audit.record(
        session,
        "project.update",
        actor=actor,
        project_id=project.id,
        target_type="project",
        target_id=project.id,
        encrypted=True,
        keyId=key.id,
        forms=[c for c in changed if c],
        via=via,
    )
    return key


def _encrypt_form(session: Session, form: Form, key: ProjectKey, actor: User | None) -> str | None:
    """Publish the form's current version again with the key (a new version); rewrite its draft."""
    drafts = session.scalars(
        select(FormVersion).where(FormVersion.form_id == form.id, FormVersion.published_at.is_(None))
    ).all()
    for draft in drafts:
        if draft.public_key is None:
            _set_xml(draft, *encrypted_xml(draft.xml, key, draft.version), key.public)
    current = form.current_version
    if current is None or current.public_key is not None:
        return None
    xml, version = encrypted_xml(current.xml, key, current.version)
    data = xml.encode("utf-8")
    new = FormVersion(
        form_id=form.id,
        version=version,
        title=current.title,
        xml=xml,
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        xlsform_sha256=current.xlsform_sha256,
        xlsform_filename=current.xlsform_filename,
        public_key=key.public,
        fields=current.fields,
        published_at=utcnow(),
        created_by_id=actor.id if actor else None,
    )
    session.add(new)
    session.flush()
    for media in current.media:
        new.media.append(
            FormMedia(name=media.name, blob_sha256=media.blob_sha256, content_type=media.content_type)
        )
    form.current_version_id = new.id
    form.current_version = new
    form.updated_at = utcnow()
    audit.record(
        session,
        "form.update.publish",
        actor=actor,
        project_id=form.project_id,
        target_type="form",
        target_id=form.xml_form_id,
        version=version,
        sha256=new.sha256,
        encrypted=True,
        keyId=key.id,
    )
    return form.xml_form_id


def _set_xml(version: FormVersion, xml: str, new_version: str, public: str) -> None:
    data = xml.encode("utf-8")
    version.xml, version.version, version.public_key = xml, new_version, public
    version.md5, version.sha256 = hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def keys_for_form(session: Session, form: Form) -> list[ProjectKey]:
    """Managed keys that encrypted some published version of ``form`` (``GET .../submissions/keys``)."""
    publics = set(
        session.scalars(
            select(FormVersion.public_key).where(
                FormVersion.form_id == form.id, FormVersion.public_key.is_not(None)
            )
        )
    )
    if not publics:
        return []
    keys = session.scalars(
        select(ProjectKey).where(ProjectKey.project_id == form.project_id).order_by(ProjectKey.id.desc())
    ).all()
    return [k for k in keys if k.public in publics]


def unlock_keys(
    session: Session, project_id: int, passphrases: Mapping[int, str]
) -> dict[str, rsa.RSAPrivateKey]:
    """Private keys by their public half (base64), for the key ids given; 400.12 for a wrong one or a key
    id of another project."""
    unlocked: dict[str, rsa.RSAPrivateKey] = {}
    for key_id, passphrase in passphrases.items():
        key = session.get(ProjectKey, key_id)
        if key is None or key.project_id != project_id:
            raise errors.undecryptable(f"There is no key {key_id} in this project.", keyId=key_id)
        unlocked[key.public] = unlock(key, passphrase)
    return unlocked
