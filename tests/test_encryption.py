"""End-to-end encryption, as ODK: managed keys on central, a Collect-like tablet encrypting as Collect
does, a field hub that holds only ciphertext, ``sarhad-sync push``, and decryption only in the export
that gives the passphrase. Runs over real HTTP on this run's database (central) and SQLite (the hub)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import select

from server.models import AuditEvent, FormVersion, ProjectKey
from server.users import create_user
from tests.collect_emulator import CollectEmulator, Instance, encrypt, read_form
from tests.conftest import AppEnv, LiveServer, RunCli, serve_in_thread
from tests.console_support import Browser
from tests.openrosa_setup import key_url, make_device
from tests.test_sync_support import FORM_ID, Store, form_xml, instance_xml, run_sync, sqlite_env, sync_env

PASSWORD = "a long enough password"
PASSPHRASE = "Pamir rivers run cold 2026"
SECRET_VILLAGE = "Zong-answer-5a1c9e"  # a known answer: must never be found in plain text at the hub
SECRET_PHOTO = b"\xff\xd8\xff\xe0JFIF" + hashlib.sha256(b"secret photo").digest() * 40


@dataclass
class Central:
    store: Store
    live: LiveServer
    project: int
    auth: dict[str, str]

    def url(self, path: str) -> str:
        return f"{self.live.url}/v1/projects/{self.project}{path}"


@pytest.fixture
def encrypted_central(central: tuple[Store, LiveServer]) -> Central:
    """Central with project Khorog, the sync survey published, and managed encryption turned on."""
    store, live = central
    project = store.project("Khorog")
    store.publish(project, form_xml())
    with store.database.write() as w:
        from server.models import Project

        create_user(w.session, "lead@example.org", PASSWORD, "admin", w.session.get(Project, project))
    token = requests.post(
        f"{live.url}/v1/sessions", json={"email": "lead@example.org", "password": PASSWORD}, timeout=10
    ).json()["token"]
    c = Central(store, live, project, {"Authorization": f"Bearer {token}"})
    too_short = requests.post(c.url("/key"), json={"passphrase": "short"}, headers=c.auth, timeout=60)
    assert too_short.status_code == 400 and too_short.json()["code"] == "400.21"
    turned_on = requests.post(
        c.url("/key"), json={"passphrase": PASSPHRASE, "hint": "the rivers"}, headers=c.auth, timeout=60
    )
    assert turned_on.status_code == 200, turned_on.text
    assert turned_on.json()["keyId"] is not None
    return c


def _envelope(central: Central, xml: bytes, files: dict[str, bytes]) -> Instance:
    """What Collect sends for this plain instance of the central's current (encrypted) form."""
    form = requests.get(central.url(f"/forms/{FORM_ID}.xml"), headers=central.auth, timeout=10)
    model = read_form(form.content)
    iid = xml.split(b"<instanceID>")[1].split(b"<")[0].decode()
    return encrypt(model, Instance(FORM_ID, iid, xml, files))


def _zip_rows(content: bytes) -> tuple[list[dict[str, str]], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        csv_name = next(n for n in zf.namelist() if n.endswith(".csv") and "/" not in n)
        rows = list(csv.DictReader(io.StringIO(zf.read(csv_name).decode("utf-8"))))
        media = {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist() if n.startswith("media/")}
    return rows, media


def test_managed_encryption_publishes_every_form_with_the_key(encrypted_central: Central) -> None:
    c = encrypted_central
    project = requests.get(c.url(""), headers=c.auth, timeout=10).json()
    form = requests.get(c.url(f"/forms/{FORM_ID}"), headers=c.auth, timeout=10).json()
    assert form["keyId"] == project["keyId"] and form["encrypted"] is True
    assert form["version"].startswith("1[encrypted:")  # a new version: tablets fetch it again
    keys = requests.get(c.url(f"/forms/{FORM_ID}/submissions/keys"), headers=c.auth, timeout=10).json()
    assert [(k["id"], k["hint"], k["managed"]) for k in keys] == [(project["keyId"], "the rivers", True)]
    xml = requests.get(c.url(f"/forms/{FORM_ID}.xml"), headers=c.auth, timeout=10).text
    assert f'base64RsaPublicKey="{keys[0]["public"]}"' in xml

    again = requests.post(c.url("/key"), json={"passphrase": PASSPHRASE}, headers=c.auth, timeout=60)
    assert again.status_code == 409 and again.json()["code"] == "409.4"
    # A form published later gets the key too, and the same file again changes nothing.
    c.store.publish(c.project, form_xml("later_form"))
    c.store.publish(c.project, form_xml("later_form"))
    with c.store.database.read() as session:
        later = session.scalars(select(FormVersion).where(FormVersion.version.like("1[encrypted:%"))).all()
        assert {v.form.xml_form_id for v in later} == {FORM_ID, "later_form"} and len(later) == 2
        key = session.get(ProjectKey, project["keyId"])
        assert key is not None and key.private["kdf"] == "pbkdf2-sha256"
        assert b"PRIVATE KEY" not in repr(key.private).encode()
        updates = session.scalars(select(AuditEvent).where(AuditEvent.action == "project.update")).all()
        assert [(u.details["encrypted"], u.details["keyId"]) for u in updates] == [(True, key.id)]


def test_tablet_to_hub_to_central_decrypted_only_in_the_export(
    encrypted_central: Central, tmp_path: Path, run_cli: RunCli, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    c = encrypted_central
    key_id = requests.get(c.url(""), headers=c.auth, timeout=10).json()["keyId"]
    hub = Store(sqlite_env(tmp_path / "hub"))
    hub_project = hub.project("Khorog")
    env = sync_env(c.live.url, c.store.hub_token("Zong hub", c.project), hub.env.data_dir)
    pulled = run_sync(env, "pull-forms")
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout

    # A tablet at the hub: Collect's own requests, encrypting with the key in the form it downloaded.
    hub_live, stop = serve_in_thread(hub.app)
    try:
        _, device_token = make_device(hub.app, hub_project)
        collect = CollectEmulator(key_url(hub_live.url, device_token, hub_project))
        downloaded = collect.download_forms([FORM_ID])[FORM_ID]
        model = read_form(downloaded.xml)
        assert model.public_key and model.version.startswith("1[encrypted:")
        iid = "uuid:0b0e8d2e-3f4b-4c61-9a55-7c9a1b2c3d4e"
        plain = instance_xml(iid, SECRET_VILLAGE, "photo.jpg", version=model.version)
        sent = collect.submit(encrypt(model, Instance(FORM_ID, iid, plain, {"photo.jpg": SECRET_PHOTO})))
        assert sent.sent, sent.message
    finally:
        stop()
    hub.app.extensions["sarhad.db"].engine.dispose()  # the hub's SQLite file as it lies on disk

    # The hub holds the envelope and ciphertext only: database, WAL and blobs carry no known answer.
    needles = [SECRET_VILLAGE.encode(), SECRET_PHOTO[:64], hashlib.sha256(SECRET_PHOTO).digest()[:16]]
    files = [p for p in hub.env.data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("sarhad.db") for p in files) and any("blobs" in p.parts for p in files)
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"plain text of an encrypted submission in {path}"

    pushed = run_sync(env, "push")
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout

    # Without the passphrase: Central's "not decrypted", in the CSV and in OData.
    locked = requests.get(c.url(f"/forms/{FORM_ID}/submissions.csv.zip"), headers=c.auth, timeout=30)
    rows, media = _zip_rows(locked.content)
    assert [(r["KEY"], r["Status"], r["village"]) for r in rows] == [(iid, "not decrypted", "")]
    assert "photo.jpg" not in media
    odata = requests.get(c.url(f"/forms/{FORM_ID}.svc/Submissions"), headers=c.auth, timeout=10).json()
    assert [(v["__id"], v["__system"]["status"]) for v in odata["value"]] == [(iid, "notDecrypted")]

    wrong = requests.get(
        c.url(f"/forms/{FORM_ID}/submissions.csv.zip"),
        params={str(key_id): "not it"},
        headers=c.auth,
        timeout=30,
    )
    assert wrong.status_code == 400 and wrong.json()["code"] == "400.12", wrong.text

    # With it, Central's way (?{keyId}=passphrase, or a form-encoded POST): decrypted on the way out.
    for response in (
        requests.get(
            c.url(f"/forms/{FORM_ID}/submissions.csv.zip"),
            params={str(key_id): PASSPHRASE},
            headers=c.auth,
            timeout=60,
        ),
        requests.post(
            c.url(f"/forms/{FORM_ID}/submissions.csv.zip"),
            data={str(key_id): PASSPHRASE},
            headers=c.auth,
            timeout=60,
        ),
    ):
        assert response.status_code == 200, response.text
        rows, media = _zip_rows(response.content)
        assert [(r["KEY"], r["Status"], r["village"], r["photo"]) for r in rows] == [
            (iid, "", SECRET_VILLAGE, "photo.jpg")
        ]
        assert media == {"photo.jpg": SECRET_PHOTO}

    report = requests.get(
        c.url(f"/forms/{FORM_ID}/report.csv"),
        params={"rows": "period", str(key_id): PASSPHRASE},
        headers=c.auth,
        timeout=60,
    )
    assert report.status_code == 200 and "encrypted submissions" not in report.text, report.text
    assert f"{key_id}=***" in caplog.text  # the request log prints the passphrase as ***
    assert PASSPHRASE not in caplog.text and quote_plus(PASSPHRASE) not in caplog.text

    # Nothing decrypted was stored at central either; the decryptions are in the audit log.
    with c.store.database.read() as session:
        audits = [a for a in session.scalars(select(AuditEvent)) if a.action == "submission.decrypt"]
        assert [a.details["keyIds"] for a in audits] == [[key_id]] * 3
    c.store.app.extensions["sarhad.db"].engine.dispose()
    blobs = [p for p in (c.store.env.data_dir / "blobs").rglob("*") if p.is_file()]
    assert blobs and not any(SECRET_PHOTO[:64] in p.read_bytes() for p in blobs)

    # The command line: --passphrase-file.
    passphrase_file = tmp_path / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE + "\n")
    out = tmp_path / "export.jsonl"
    run_cli(
        c.store.env, "export", FORM_ID, "--project", "Khorog", "-o", str(out), "--passphrase-file",
        str(passphrase_file),
    )  # fmt: skip
    assert SECRET_VILLAGE in out.read_text()
    passphrase_file.write_text("wrong passphrase\n")
    refused = run_cli(
        c.store.env, "export", FORM_ID, "--project", "Khorog", "-o", str(tmp_path / "no.jsonl"),
        "--passphrase-file", str(passphrase_file), check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "passphrase" in (refused.stderr + refused.stdout)


def test_a_tampered_signature_is_flagged_never_dropped(
    encrypted_central: Central, tmp_path: Path, run_cli: RunCli
) -> None:
    c = encrypted_central
    good_id, bad_id = "uuid:11111111-1111-4111-8111-111111111111", "uuid:22222222-2222-4222-8222-222222222222"
    version = requests.get(c.url(f"/forms/{FORM_ID}"), headers=c.auth, timeout=10).json()["version"]
    good = _envelope(c, instance_xml(good_id, "Vrang", version=version), {})
    bad = _envelope(c, instance_xml(bad_id, "Yamg", version=version), {})
    # The tampered one carries a signature over other content (as if a file had been swapped).
    form = requests.get(c.url(f"/forms/{FORM_ID}.xml"), headers=c.auth, timeout=10)
    public = serialization.load_der_public_key(base64.b64decode(read_form(form.content).public_key or ""))
    forged = public.encrypt(  # type: ignore[union-attr]
        hashlib.md5(b"something else\n").digest(),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    signature = bad.xml.split(b"<base64EncryptedElementSignature>")[1].split(b"<")[0]
    bad.xml = bad.xml.replace(signature, base64.b64encode(forged))
    for instance in (good, bad):
        assert c.store.submit(c.project, instance.xml, instance.files) == "created"
    # An envelope whose encrypted data file has not arrived yet (Collect sends it in a later part).
    partial_id = "uuid:44444444-4444-4444-8444-444444444444"
    partial = _envelope(c, instance_xml(partial_id, "Darshai", version=version), {})
    c.store.submit(c.project, partial.xml, {})
    odata = requests.get(c.url(f"/forms/{FORM_ID}.svc/Submissions"), headers=c.auth, timeout=10).json()
    statuses = {v["__id"]: v["__system"]["status"] for v in odata["value"]}
    assert statuses == {
        good_id: "notDecrypted",
        bad_id: "notDecrypted",
        partial_id: "missingEncryptedFormData",
    }
    locked, _ = _zip_rows(
        requests.get(c.url(f"/forms/{FORM_ID}/submissions.csv.zip"), headers=c.auth, timeout=30).content
    )
    assert {r["KEY"]: r["Status"] for r in locked}[partial_id] == "missing encrypted form data"
    # The console says so instead of showing empty answers.
    browser = Browser.open(c.live.url)
    assert browser.sign_in("lead@example.org", PASSWORD).status_code == 302
    page = browser.get(f"/projects/{c.project}/forms/{FORM_ID}/submissions/{good_id}")
    assert page.status_code == 200 and 'id="encrypted"' in page.text and "Vrang" not in page.text

    passphrase_file = tmp_path / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE)
    out = tmp_path / "export.csv.zip"
    run_cli(
        c.store.env, "export", FORM_ID, "--project", "Khorog", "-o", str(out), "--passphrase-file",
        str(passphrase_file),
    )  # fmt: skip
    rows, _ = _zip_rows(out.read_bytes())
    by_key = {r["KEY"]: r for r in rows}
    assert by_key[good_id]["village"] == "Vrang" and "signature" not in by_key[good_id]["_issues"]
    assert by_key[bad_id]["village"] == "Yamg" and "signature does not match" in by_key[bad_id]["_issues"]
    assert (
        by_key[partial_id]["Status"] == "missing encrypted form data" and by_key[partial_id]["village"] == ""
    )
    assert "submission.xml.enc was not received" in by_key[partial_id]["_issues"]

    # A report counts them only when it can read them.
    report = tmp_path / "report.csv"
    run_cli(c.store.env, "report", FORM_ID, "--project", "Khorog", "--rows", "period", "-o", str(report))
    assert "3 encrypted submissions" in report.read_text()
    run_cli(
        c.store.env, "report", FORM_ID, "--project", "Khorog", "--rows", "period", "-o", str(report),
        "--passphrase-file", str(passphrase_file),
    )  # fmt: skip
    assert "1 encrypted submissions" in report.read_text()  # only the one whose data has not arrived

    # A photo in an envelope: the console lists its encrypted file and makes no thumbnail of it.
    photo_id = "uuid:55555555-5555-4555-8555-555555555555"
    sealed = _envelope(
        c, instance_xml(photo_id, "Vrang", "photo.jpg", version=version), {"photo.jpg": SECRET_PHOTO}
    )
    assert c.store.submit(c.project, sealed.xml, sealed.files) == "created"
    base = f"/projects/{c.project}/forms/{FORM_ID}/submissions/{photo_id}"
    page = browser.get(base)
    assert page.status_code == 200 and 'id="encrypted"' in page.text
    assert "/thumbnails/" not in page.text and f"{base}/files/photo.jpg.enc" in page.text
    assert browser.get(f"{base}/thumbnails/photo.jpg.enc").status_code == 404


def test_a_tablet_folder_and_a_usb_bundle_carry_the_envelope(
    encrypted_central: Central, tmp_path: Path, run_cli: RunCli
) -> None:
    """Collect's storage as it leaves an encrypted instance (the envelope renamed to the instance's own
    file name, ``.enc`` files beside it, no plain text) → ``pull-device`` into a hub → a USB bundle →
    central, where only the passphrase opens it."""
    from server.sync import keys

    c = encrypted_central
    version = requests.get(c.url(f"/forms/{FORM_ID}"), headers=c.auth, timeout=10).json()["version"]
    iid = "uuid:33333333-3333-4333-8333-333333333333"
    envelope = _envelope(
        c, instance_xml(iid, SECRET_VILLAGE, "p.jpg", version=version), {"p.jpg": SECRET_PHOTO}
    )
    name = "Sync survey_2026-11-05_10-00-00"
    folder = tmp_path / "tablet" / "Android/data/org.odk.collect.android/files/instances" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.xml").write_bytes(envelope.xml)
    for file_name, data in envelope.files.items():
        (folder / file_name).write_bytes(data)

    hub = Store(sqlite_env(tmp_path / "hub"))
    hub.publish(hub.project("Khorog"), requests.get(c.url(f"/forms/{FORM_ID}.xml"), headers=c.auth).content)
    central_keys = {
        "SARHAD_SYNC_CENTRAL_BUNDLE_KEY": keys.raw_public_b64(keys.bundle_key(c.store.env.data_dir)),
        "SARHAD_SYNC_CENTRAL_SIGNING_KEY": keys.raw_public_b64(keys.signing_key(c.store.env.data_dir)),
    }
    offline = sync_env("https://central.invalid", c.store.hub_token("USB hub", c.project), hub.env.data_dir,
                       **central_keys)  # fmt: skip
    pulled = run_sync(offline, "pull-device", str(tmp_path / "tablet"))
    assert pulled.returncode == 0 and "into the hub: 1 created" in pulled.stdout, (
        pulled.stdout + pulled.stderr
    )
    bundle = tmp_path / "usb.sarhad"
    assert run_sync(offline, "bundle", "export", str(bundle)).returncode == 0
    imported = run_sync({**offline, "SARHAD_SYNC_CENTRAL_URL": c.live.url}, "bundle", "import", str(bundle))
    assert imported.returncode == 0, imported.stderr + imported.stdout
    assert {h[1:] for h in c.store.holdings()} == {h[1:] for h in hub.holdings()}  # the envelope, as is

    passphrase_file = tmp_path / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE)
    out = tmp_path / "export.csv.zip"
    run_cli(
        c.store.env, "export", FORM_ID, "--project", "Khorog", "-o", str(out), "--passphrase-file",
        str(passphrase_file),
    )  # fmt: skip
    rows, media = _zip_rows(out.read_bytes())
    assert [(r["KEY"], r["village"], r["_issues"]) for r in rows] == [(iid, SECRET_VILLAGE, "")]
    assert media == {"p.jpg": SECRET_PHOTO}


def test_sarhad_project_encrypt_reads_the_passphrase_from_stdin(make_env: object, run_cli: RunCli) -> None:
    env: AppEnv = make_env()  # type: ignore[operator]
    run_cli(env, "project", "create", "Rushan")
    short = run_cli(env, "project", "encrypt", "Rushan", input="too short\n", check=False)
    assert short.returncode != 0
    done = run_cli(env, "project", "encrypt", "Rushan", "--hint", "the usual", input=PASSPHRASE + "\n")
    assert "encrypted with key" in done.stdout
    again = run_cli(env, "project", "encrypt", "Rushan", input=PASSPHRASE + "\n", check=False)
    assert again.returncode != 0 and "already" in (again.stderr + again.stdout)
