"""Collect's encryption algorithm (server/odk_encryption.py) against ODK Central's test vectors, which
were made by ODK Collect 1.22.4 (tests/data/odk_collect_encryption_vectors.json: data only), and
against the Collect-like encrypting client of tests/collect_emulator.py."""

from __future__ import annotations

import base64
import contextlib
import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.odk_encryption import (
    Undecryptable,
    decrypt_file,
    file_ivs,
    iv_for,
    open_envelope,
    read_envelope,
    unwrap_key,
)
from tests.collect_emulator import Instance, encrypt, read_form
from tests.test_sync_support import form_xml, instance_xml

VECTORS = json.loads((Path(__file__).parent / "data" / "odk_collect_encryption_vectors.json").read_text())


@pytest.fixture(scope="module")
def central_private_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(VECTORS["private_key_pem"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def test_unwraps_a_key_encrypted_by_collect(central_private_key: rsa.RSAPrivateKey) -> None:
    vector = VECTORS["key_retrieval"]
    assert unwrap_key(central_private_key, vector["base64EncryptedKey"]) == base64.b64decode(
        vector["aes_key"]
    )


def test_ivs_bump_one_byte_further_per_file() -> None:
    vector = VECTORS["ivs"]
    key = base64.b64decode(vector["aes_key"])
    ivs = file_ivs(vector["instanceID"], key)
    produced = [next(ivs) for _ in range(32)]
    for index, expected in vector["expected"].items():
        assert produced[int(index)].hex() == expected
        assert iv_for(vector["instanceID"], key, int(index)).hex() == expected


def test_decrypts_a_submission_made_by_collect(central_private_key: rsa.RSAPrivateKey) -> None:
    vector = VECTORS["end_to_end"]
    key = unwrap_key(central_private_key, vector["base64EncryptedKey"])
    iv = iv_for(vector["instanceID"], key, vector["file_index"])
    plain = decrypt_file(key, iv, base64.b64decode(vector["ciphertext"]))
    assert plain.decode("utf-8") == vector["plaintext"]
    # The IV matters: the first file's IV garbles the first block (CFB recovers after it).
    wrong = decrypt_file(key, iv_for(vector["instanceID"], key, 0), base64.b64decode(vector["ciphertext"]))
    assert wrong[:16] != plain[:16] and wrong[16:] == plain[16:]


def test_the_test_client_encrypts_as_collect_and_the_server_opens_it() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    xml = form_xml().decode().replace("<model>", f'<model><submission base64RsaPublicKey="{public}"/>')
    model = read_form(xml.encode())
    assert model.public_key == public
    picture = random.Random(3).randbytes(5000)
    plain = instance_xml("uuid:enc-unit-1", "Vanj", "p.jpg")
    envelope = encrypt(model, Instance(model.form_id, "uuid:enc-unit-1", plain, {"p.jpg": picture}))
    assert sorted(envelope.files) == ["p.jpg.enc", "submission.xml.enc"]
    parsed = read_envelope(envelope.xml)
    assert parsed.media == ("p.jpg.enc",) and parsed.xml_file == "submission.xml.enc"
    opened = open_envelope(private, parsed, envelope.files.get)
    assert opened.xml == plain and opened.media == {"p.jpg": picture} and opened.signature_ok is True

    swapped = dict(envelope.files)
    other = encrypt(model, Instance(model.form_id, "uuid:enc-unit-1", plain, {"p.jpg": picture[::-1]}))
    # A file from another encryption of the same instance does not open with this one's key.
    swapped["p.jpg.enc"] = other.files["p.jpg.enc"]
    # Its padding is refused, or (1 time in ~256 the garbage ends like padding) its signature is.
    with contextlib.suppress(Undecryptable):
        assert open_envelope(private, parsed, swapped.get).signature_ok is False
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Undecryptable):
        open_envelope(stranger, parsed, envelope.files.get)
