"""ODK's submission encryption, as ODK Collect does it (https://getodk.github.io/xforms-spec/encryption).

What Collect sends for a form with ``base64RsaPublicKey`` is an *envelope*: a small XML document naming
the files it encrypted, plus those files. This module reads envelopes and decrypts them with a private
key; it never writes anything. The algorithm (every step checked against ODK Central's test vectors made
by Collect 1.22.4, see tests/test_odk_encryption.py):

- a random 32-byte AES key per submission, wrapped with RSA-OAEP (SHA-256 for the hash and for MGF1):
  ``base64EncryptedKey``;
- per file an IV: ``seed = MD5(instanceID as UTF-8 ‖ AES key)``, then for file *i* (0-based: the media in
  ``<media>`` order, the submission XML last) ``seed[j % 16] += 1`` for every j ≤ i (cumulative);
- each file AES-256-CFB (128-bit feedback) over the PKCS#7-padded plain bytes, named ``<name>.enc``;
- ``base64EncryptedElementSignature``: the MD5 digest of the lines ``formId``, ``version`` (when there is
  one), ``base64EncryptedKey``, ``instanceID``, then ``<name>::<md5 hex of the plain file>`` per media file
  and ``submission.xml::<md5 hex>`` last (each line ending in a newline), RSA-OAEP encrypted like the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from lxml import etree

try:  # cryptography keeps CFB among its "decrepit" modes since 47; it is what Collect uses
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - cryptography < 47
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from server import safe_xml

ENC_SUFFIX = ".enc"
PLAIN_XML_NAME = "submission.xml"


class Undecryptable(Exception):
    """The envelope cannot be opened with this key (another key, or damaged data)."""


def oaep() -> padding.OAEP:
    """Collect's ``RSA/NONE/OAEPWithSHA256AndMGF1Padding`` with SHA-256 for MGF1 too."""
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def public_key_from_base64(text: str) -> rsa.RSAPublicKey:
    """A form's ``base64RsaPublicKey`` (DER SubjectPublicKeyInfo, base64, no PEM lines) as a key."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    key = load_der_public_key(base64.b64decode("".join(text.split())))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def unwrap_key(private_key: rsa.RSAPrivateKey, b64_encrypted_key: str) -> bytes:
    try:
        key = private_key.decrypt(base64.b64decode(b64_encrypted_key), oaep())
    except (ValueError, binascii.Error) as exc:
        raise Undecryptable("the submission's key does not open with this private key") from exc
    if len(key) != 32:
        raise Undecryptable("the submission's key is not a 256-bit AES key")
    return key


def file_ivs(instance_id: str, key: bytes) -> Iterator[bytes]:
    """The IV of file 0, 1, 2... (media in envelope order, the submission XML last)."""
    seed = bytearray(hashlib.md5(instance_id.encode("utf-8") + key).digest())
    index = 0
    while True:
        seed[index % 16] = (seed[index % 16] + 1) & 0xFF
        yield bytes(seed)
        index += 1


def iv_for(instance_id: str, key: bytes, index: int) -> bytes:
    for i, iv in enumerate(file_ivs(instance_id, key)):
        if i == index:
            return iv
    raise AssertionError("unreachable")


def decrypt_file(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise Undecryptable("a file does not decrypt to padded data (wrong key or damaged file)") from exc


def signature_source(
    form_id: str, version: str, b64_key: str, instance_id: str, files: list[tuple[str, bytes]]
) -> bytes:
    """The text Collect signs: ``files`` are (plain name, plain bytes), media first, submission.xml last."""
    lines = [form_id, *([version] if version else []), b64_key, instance_id]
    lines += [f"{name}::{hashlib.md5(data).hexdigest()}" for name, data in files]
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def plain_name(encrypted_name: str) -> str:
    return encrypted_name[: -len(ENC_SUFFIX)] if encrypted_name.endswith(ENC_SUFFIX) else encrypted_name


@dataclass(frozen=True)
class Envelope:
    form_id: str
    version: str
    instance_id: str
    b64_key: str
    xml_file: str
    media: tuple[str, ...]  # encrypted names, in envelope order
    b64_signature: str | None


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def read_envelope(xml: str | bytes) -> Envelope:
    """The fields of an envelope (already accepted by ingest, so it parses safely)."""
    try:
        root = safe_xml.parse(xml if isinstance(xml, bytes) else xml.encode("utf-8"))
    except safe_xml.UnsafeXml as exc:
        raise Undecryptable("the envelope is not readable XML") from exc
    values: dict[str, str] = {}
    media: list[str] = []
    instance_id = ""
    for el in root.iter():
        if not isinstance(el.tag, str) or el is root:
            continue
        name, text = _local(el), (el.text or "").strip()
        if name == "file" and el.getparent() is not None and _local(el.getparent()) == "media":
            if text:
                media.append(text)
        elif name == "instanceID" and not instance_id:
            instance_id = text
        elif name in ("base64EncryptedKey", "encryptedXmlFile", "base64EncryptedElementSignature"):
            values[name] = text
    version = next((v for k, v in root.attrib.items() if etree.QName(k).localname == "version"), "")
    form_id = next((v for k, v in root.attrib.items() if etree.QName(k).localname == "id"), "")
    if not values.get("base64EncryptedKey") or not values.get("encryptedXmlFile") or not instance_id:
        raise Undecryptable("the envelope lacks its key, its data file or its instanceID")
    return Envelope(
        form_id=form_id,
        version=version.strip(),
        instance_id=instance_id,
        b64_key=values["base64EncryptedKey"],
        xml_file=values["encryptedXmlFile"],
        media=tuple(media),
        b64_signature=values.get("base64EncryptedElementSignature") or None,
    )


@dataclass
class Opened:
    """An envelope opened: the submission XML, its media by plain name, and whether the signature holds."""

    xml: bytes
    media: dict[str, bytes]
    signature_ok: bool | None  # None: the envelope carries no signature
    missing: list[str]  # encrypted files named but not received
    aes_key: bytes  # the submission's own key, for a second pass over its files


def open_envelope(
    private_key: rsa.RSAPrivateKey,
    envelope: Envelope,
    read: Callable[[str], bytes | None],
    *,
    aes_key: bytes | None = None,
    media_only: bool = False,
) -> Opened:
    """Decrypt every file of ``envelope`` (``read`` gives an encrypted file's bytes by name, or None).

    ``aes_key``: the submission's key already unwrapped (spares an RSA operation); ``media_only``: only the
    media, no submission XML and no signature check (an export's second pass over the files).
    Raises :class:`Undecryptable` when the key or the submission's data file does not open.
    """
    key = aes_key or unwrap_key(private_key, envelope.b64_key)
    ivs = file_ivs(envelope.instance_id, key)
    media: dict[str, bytes] = {}
    missing: list[str] = []
    signed: list[tuple[str, bytes]] = []
    for name in envelope.media:
        iv = next(ivs)
        data = read(name)
        if data is None:
            missing.append(name)
            continue
        plain = decrypt_file(key, iv, data)
        media[plain_name(name)] = plain
        signed.append((plain_name(name), plain))
    if media_only:
        return Opened(xml=b"", media=media, signature_ok=None, missing=missing, aes_key=key)
    data = read(envelope.xml_file)
    if data is None:
        raise Undecryptable(f"the submission's data file {envelope.xml_file} was not received")
    xml = decrypt_file(key, next(ivs), data)
    signed.append((PLAIN_XML_NAME, xml))
    signature_ok: bool | None = None
    if envelope.b64_signature and not missing:  # with a file not received yet it cannot be checked
        expected = hashlib.md5(
            signature_source(
                envelope.form_id, envelope.version, envelope.b64_key, envelope.instance_id, signed
            )
        ).digest()
        try:
            signature_ok = private_key.decrypt(base64.b64decode(envelope.b64_signature), oaep()) == expected
        except (ValueError, binascii.Error):
            signature_ok = False
    return Opened(xml=xml, media=media, signature_ok=signature_ok, missing=missing, aes_key=key)
