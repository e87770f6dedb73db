"""ODK Collect's conversation with the server, over real HTTP (a threaded live server), as PROTOCOL.md
describes it: form list, manifests, downloads, HEAD 204, submissions, split uploads, resends, edits,
conflicts, Digest, and every refusal a device can meet. Runs on SQLite, or PostgreSQL when
SARHAD_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import hashlib
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openpyxl
import pytest
import requests
from flask import Flask
from sqlalchemy import select

from server.config import settings
from server.db import Database
from server.models import (
    AppUser,
    Conflict,
    Form,
    FormAssignment,
    Submission,
    SubmissionVersion,
    utcnow,
)
from tests.collect_emulator import (
    USER_AGENT,
    CollectEmulator,
    CollectError,
    Instance,
    edit,
    fill,
    multipart_body,
    prepare,
    read_form,
    response_message,
)
from tests.conftest import LiveServer, serve_in_thread
from tests.openrosa_setup import (
    FORMS_DIR,
    assert_no_staging_left,
    attachments_of,
    counts,
    digest_url,
    form_pk,
    key_url,
    make_device,
    make_project,
    new_uuid,
    publish_xform,
    publish_xlsform,
    small_instance,
    small_xform,
)

MISSION_FORMS = ("safety_concerns", "focus_group", "youth_consultation")


def xlsform_version(form_id: str) -> str:
    """The ``version`` on the settings sheet of ``forms/<form_id>.xlsx``: what Collect must be offered."""
    settings = openpyxl.load_workbook(FORMS_DIR / f"{form_id}.xlsx", read_only=True)["settings"]
    header, values = list(settings.iter_rows(max_row=2, values_only=True))
    return str(values[header.index("version")])


DIGEST_USER, DIGEST_PASSWORD = "facilitator-vanj", "Пароли-дароз 2026"


@dataclass
class Site:
    live: LiveServer
    project_id: int
    token: str
    device_id: int

    @property
    def database(self) -> Database:
        return self.live.database

    @property
    def server_url(self) -> str:
        return key_url(self.live.url, self.token, self.project_id)

    def collect(self, **kwargs: Any) -> CollectEmulator:
        return CollectEmulator(self.server_url, **kwargs)


@pytest.fixture(scope="module")
def site(live_server: LiveServer) -> Site:
    """A project with the small form and the three mission forms, and a device with a token."""
    app = live_server.app
    project_id = make_project(live_server.database)
    publish_xform(app, project_id, small_xform())
    for name in MISSION_FORMS:
        publish_xlsform(app, project_id, FORMS_DIR / f"{name}.xlsx")
    device_id, token = make_device(app, project_id, "tablet 1")
    assert token
    make_device(app, project_id, DIGEST_USER, password=DIGEST_PASSWORD)
    return Site(live_server, project_id, token, device_id)


def version_of(database: Database, instance_id: str) -> SubmissionVersion | None:
    with database.read() as session:
        found = session.scalar(select(SubmissionVersion).where(SubmissionVersion.instance_id == instance_id))
        if found is not None:
            session.expunge(found)  # keep its loaded columns readable after the session ends
        return found


def assert_openrosa_xml(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert "text/xml" in response.headers["Content-Type"]
    assert response.headers["X-OpenRosa-Version"] == "1.0"


# ---- form list, manifests, downloads --------------------------------------------------------------------


def test_form_list_and_downloads_are_what_collect_checks(site: Site) -> None:
    collect = site.collect()
    listed = {f.form_id: f for f in collect.form_list()}
    assert set(listed) == {"small", *MISSION_FORMS}
    first = collect.requests_made[0]
    assert_openrosa_xml(first, 200)
    assert "X-OpenRosa-Accept-Content-Length" in first.headers and "Date" in first.headers
    assert listed["small"].manifest_url is None  # no media, no manifest
    for name in MISSION_FORMS:
        assert listed[name].manifest_url and listed[name].download_url.startswith(site.live.url + "/v1/key/")
        assert listed[name].version == xlsform_version(name)
    downloaded = collect.download_forms()  # checks every md5 against the bytes served
    assert set(downloaded["safety_concerns"].media) == {"regions.csv", "districts.csv", "jamoats.csv"}
    assert set(downloaded["youth_consultation"].media) == {"regions.csv", "districts.csv"}
    assert downloaded["safety_concerns"].media["regions.csv"] == (FORMS_DIR / "regions.csv").read_bytes()
    with site.database.read() as session:
        form = session.scalar(
            select(Form).where(Form.project_id == site.project_id, Form.xml_form_id == "small")
        )
        assert form is not None and form.current_version is not None
        assert downloaded["small"].xml == form.current_version.xml.encode("utf-8")
    for request in collect.requests_made:
        assert request.request.url is not None and "deviceID=collect:" in request.request.url
        assert request.request.headers["User-Agent"] == USER_AGENT


def test_downloads_carry_etags_and_answer_304(site: Site) -> None:
    collect = site.collect()
    listed = {f.form_id: f for f in collect.form_list()}
    form = collect.request("GET", listed["safety_concerns"].download_url)
    etag = form.headers["ETag"]
    assert etag == f'"{listed["safety_concerns"].hash}"'
    again = collect.request("GET", listed["safety_concerns"].download_url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    media = collect.manifest(listed["safety_concerns"].manifest_url or "")
    csv = collect.request("GET", media[0].download_url)
    assert csv.status_code == 200 and csv.headers["ETag"] == f'"{media[0].hash}"'
    assert (
        collect.request(
            "GET", media[0].download_url, headers={"If-None-Match": csv.headers["ETag"]}
        ).status_code
        == 304
    )


def test_closing_and_closed_forms_leave_the_list(live_server: LiveServer) -> None:
    app, database = live_server.app, live_server.database
    project_id = make_project(database)
    for state in ("open", "closing", "closed"):
        pk = publish_xform(app, project_id, small_xform(form_id=f"f_{state}"))
        with database.write() as w:
            form = w.session.get(Form, pk)
            assert form is not None
            form.state = state
    _, token = make_device(app, project_id)
    collect = CollectEmulator(key_url(live_server.url, token or "", project_id))
    assert [f.form_id for f in collect.form_list()] == ["f_open"]
    # A closing form still takes what devices already hold; a closed one refuses with a message.
    closing = collect.submit(Instance("f_closing", "x", small_instance(new_uuid(), form_id="f_closing"), {}))
    assert closing.sent and closing.status == 201
    closed = collect.submit(Instance("f_closed", "x", small_instance(new_uuid(), form_id="f_closed"), {}))
    assert closed.status == 409 and "closed" in (closed.message or "")


def test_assignments_narrow_what_a_device_sees_and_sends(live_server: LiveServer) -> None:
    app, database = live_server.app, live_server.database
    project_id = make_project(database)
    mine = publish_xform(app, project_id, small_xform(form_id="mine"))
    publish_xform(app, project_id, small_xform(form_id="theirs"))
    device, token = make_device(app, project_id)
    with database.write() as w:
        w.session.add(FormAssignment(app_user_id=device, form_id=mine))
    collect = CollectEmulator(key_url(live_server.url, token or "", project_id))
    assert [f.form_id for f in collect.form_list()] == ["mine"]
    refused = collect.submit(Instance("theirs", "x", small_instance(new_uuid(), form_id="theirs"), {}))
    assert refused.status == 403 and refused.message
    direct = collect.request("GET", f"{collect.server_url}/forms/theirs.xml")
    assert_openrosa_xml(direct, 404)


# ---- submissions ----------------------------------------------------------------------------------------


def test_head_submission_is_204_with_the_size_limit(site: Site) -> None:
    collect = site.collect()
    assert collect.head_submission() == settings(site.live.app).max_request_bytes
    head = collect.requests_made[-1]
    assert head.status_code == 204 and head.headers["X-OpenRosa-Version"] == "1.0"
    assert head.headers["Date"].endswith(" GMT")  # the HTTP server's own (OpenRosa asks for one)


@pytest.mark.parametrize("form_id", MISSION_FORMS)
def test_mission_forms_filled_and_sent_as_collect_does(site: Site, form_id: str) -> None:
    collect = site.collect()
    downloaded = collect.download_forms(only=[form_id])[form_id]
    model = read_form(downloaded.xml, downloaded.media)
    instance = prepare(model, fill(model, rng=random.Random(form_id)))
    sent = collect.submit(instance)
    assert sent.sent and sent.status == 201, sent
    assert sent.message and "received" in sent.message
    version = version_of(site.database, instance.instance_id)
    assert version is not None and version.sha256 == instance.sha256
    assert version.device_id == collect.device_id and version.user_agent == USER_AGENT
    assert version.app_user_id == site.device_id
    pk = form_pk(site.database, site.project_id, form_id)
    stored = attachments_of(site.database, pk, instance.instance_id)
    assert stored == {n: hashlib.sha256(d).hexdigest() for n, d in instance.files.items()}
    for name, data in instance.files.items():
        assert site.database.blobs.read_bytes(stored[name] or "") == data
    # Auto-send and impatient facilitators resend: success again, nothing new.
    assert collect.submit(instance).status == 201
    assert counts(site.database, pk)["versions"] == counts(site.database, pk)["submissions"]


def test_split_by_size_and_by_100_files_merges_into_one_submission(site: Site) -> None:
    collect = site.collect()
    model = read_form(collect.download_forms(only=["small"])["small"].xml)
    instance = fill(model, rng=random.Random(7), repeat_rows=104)  # 105 photos + audit.csv
    assert len(instance.files) == 106
    by_count = collect.submit(instance)
    assert by_count.sent and [p.incomplete for p in by_count.posts] == [True, False]
    assert [len(p.files) for p in by_count.posts] == [100, 6]
    small = fill(model, rng=random.Random(8), repeat_rows=3)
    limit = len(small.xml) + max(len(d) for d in small.files.values()) + 10
    by_size = collect.post_batches(small, limit)
    assert by_size.sent and len(by_size.posts) == len(small.files)
    assert all(p.incomplete for p in by_size.posts[:-1]) and not by_size.posts[-1].incomplete
    pk = form_pk(site.database, site.project_id, "small")
    for sent in (instance, small):
        stored = attachments_of(site.database, pk, sent.instance_id)
        assert stored == {n: hashlib.sha256(d).hexdigest() for n, d in sent.files.items()}
    with site.database.read() as session:
        versions = session.scalars(
            select(SubmissionVersion.instance_id).where(
                SubmissionVersion.instance_id.in_([instance.instance_id, small.instance_id])
            )
        ).all()
    assert sorted(versions) == sorted([instance.instance_id, small.instance_id])


def test_interrupted_split_upload_resumes_with_a_full_resend(site: Site) -> None:
    collect = site.collect()
    model = read_form(collect.download_forms(only=["small"])["small"].xml)
    instance = fill(model, rng=random.Random(9), repeat_rows=3)
    names = list(instance.files)
    body, ctype = multipart_body(instance.xml, [(names[0], instance.files[names[0]])], incomplete=True)
    first = collect.request(
        "POST", f"{collect.server_url}/submission", data=body, headers={"Content-Type": ctype}
    )
    assert first.status_code == 201
    pk = form_pk(site.database, site.project_id, "small")
    partial = attachments_of(site.database, pk, instance.instance_id)
    assert sum(v is not None for v in partial.values()) == 1 and len(partial) == len(names)
    assert collect.submit(instance).sent  # the whole submission again, as Collect retries
    assert None not in attachments_of(site.database, pk, instance.instance_id).values()


def test_edit_conflict_and_stale_edit(site: Site) -> None:
    collect = site.collect()
    model = read_form(collect.download_forms(only=["small"])["small"].xml)
    original = fill(model, rng=random.Random(11))
    assert collect.submit(original).status == 201
    edited = edit(model, original, rng=random.Random(12))
    assert b"<deprecatedID>" + original.instance_id.encode() in edited.xml
    sent = collect.submit(edited)
    assert sent.status == 201
    with site.database.read() as session:
        submission = session.scalar(select(Submission).where(Submission.instance_id == original.instance_id))
        assert submission is not None and submission.review_state == "edited"
        current = session.get(SubmissionVersion, submission.current_version_id)
        assert current is not None and current.instance_id == edited.instance_id
    # Another tablet edits the old version: kept for the coordinator, the device told so.
    stale = collect.submit(edit(model, original, rng=random.Random(13)))
    assert stale.status == 409 and "kept for the coordinator" in (stale.message or "")
    # Same instanceID, other answers: 409, kept once however often it is resent.
    clash = fill(model, rng=random.Random(14), instance_id=original.instance_id)
    for _ in range(3):
        answer = collect.submit(clash)
        assert answer.status == 409
        assert answer.message == (
            "A different submission with this ID is already on the server; it has been kept for the "
            "coordinator to review."
        )
    assert_openrosa_xml(collect.requests_made[-1], 409)
    with site.database.read() as session:
        kept = session.scalars(select(Conflict).where(Conflict.instance_id == original.instance_id)).all()
        assert len(kept) == 1 and kept[0].xml.encode() == clash.xml and kept[0].device_id == collect.device_id


def test_digest_device_downloads_and_submits(site: Site) -> None:
    collect = CollectEmulator(
        digest_url(site.live.url, site.project_id), username=DIGEST_USER, password=DIGEST_PASSWORD
    )
    downloaded = collect.download_forms()
    assert set(downloaded) == {"small", *MISSION_FORMS}
    # The first request goes bare (requests keeps the challenge in the answer's history), later ones
    # reuse the nonce pre-emptively with nc+1 as Collect does, so they need no second round trip.
    bare = collect.requests_made[0].history[0]
    assert bare.status_code == 401 and bare.headers["WWW-Authenticate"].startswith("Digest")
    assert "Authorization" not in bare.request.headers
    assert all(not r.history for r in collect.requests_made[1:])
    assert "X-OpenRosa-Version" in bare.headers and response_message(bare.content)
    listed = downloaded["small"].listed
    assert "/key/" not in listed.download_url and listed.download_url.startswith(
        site.live.url + "/v1/projects/"
    )
    model = read_form(downloaded["small"].xml)
    instance = fill(model, rng=random.Random(21))
    assert collect.submit(instance).status == 201
    version = version_of(site.database, instance.instance_id)
    assert version is not None and version.sha256 == instance.sha256
    wrong = CollectEmulator(
        digest_url(site.live.url, site.project_id), username=DIGEST_USER, password="wrong"
    )
    with pytest.raises(CollectError, match="401"):
        wrong.form_list()


# ---- refusals -------------------------------------------------------------------------------------------


def _post(site: Site, body: bytes, content_type: str, url: str | None = None) -> requests.Response:
    collect = site.collect()
    return collect.request(
        "POST", url or f"{site.server_url}/submission", data=body, headers={"Content-Type": content_type}
    )


def _submission_count(database: Database) -> int:
    with database.read() as session:
        return len(session.scalars(select(SubmissionVersion.id)).all())


@pytest.mark.parametrize(
    ("xml", "status", "words"),
    [
        (small_instance("uuid:r1", form_id="no_such_form"), 404, "no form"),
        (small_instance("uuid:r2", version="999"), 404, "no published version"),
        (b"<data id='small' version='1'><village>cut", 400, "well-formed"),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         b'<data id="small">&x;</data>', 400, "DOCTYPE"),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
         b']><data id="small" version="1"><village>&b;</village></data>', 400, "DOCTYPE"),
    ],
    ids=["unknown-form", "unknown-version", "malformed", "external-entity", "entity-expansion"],
)  # fmt: skip
def test_bad_submissions_get_an_openrosa_error_and_store_nothing(
    site: Site, xml: bytes, status: int, words: str
) -> None:
    before = _submission_count(site.database)
    body, ctype = multipart_body(xml, [("photo.jpg", b"\xff\xd8 photo")])
    response = _post(site, body, ctype)
    assert_openrosa_xml(response, status)
    assert words in (response_message(response.content) or "")
    assert _submission_count(site.database) == before


def test_body_without_xml_part_or_not_multipart_is_400(site: Site) -> None:
    body, ctype = multipart_body(b"<x/>", [])
    no_xml = body.replace(b'name="xml_submission_file"', b'name="something_else"')
    response = _post(site, no_xml, ctype)
    assert_openrosa_xml(response, 400)
    assert "xml_submission_file" in (response_message(response.content) or "")
    plain = _post(site, small_instance(new_uuid()), "text/xml")
    assert_openrosa_xml(plain, 400)
    too_long = _post(site, body, "multipart/form-data; boundary=" + "b" * 300)  # RFC 2046 allows 70
    assert_openrosa_xml(too_long, 400)
    assert "boundary" in (response_message(too_long.content) or "")


def test_bad_attachment_name_is_400(site: Site) -> None:
    xml = small_instance(new_uuid())
    body, ctype = multipart_body(xml, [("../../etc/cron.d/x", b"evil")])
    response = _post(site, body, ctype)
    assert_openrosa_xml(response, 400)
    assert version_of(site.database, xml.decode().split("<instanceID>")[1].split("<")[0]) is None


def test_credentials(site: Site) -> None:
    no_such = key_url(site.live.url, "not-a-token", site.project_id)
    answer = CollectEmulator(no_such).request("HEAD", f"{no_such}/submission")
    assert answer.status_code == 401 and answer.headers["X-OpenRosa-Version"] == "1.0"
    app, database = site.live.app, site.database
    revoked_id, revoked_token = make_device(app, site.project_id)
    with database.write() as w:
        user = w.session.get(AppUser, revoked_id)
        assert user is not None
        user.revoked_at = utcnow()
    revoked = CollectEmulator(key_url(site.live.url, revoked_token or "", site.project_id))
    with pytest.raises(CollectError):
        revoked.form_list()
    assert revoked.requests_made[-1].status_code in (401, 403)
    body, ctype = multipart_body(small_instance(new_uuid()), [])
    posted = revoked.request(
        "POST", f"{revoked.server_url}/submission", data=body, headers={"Content-Type": ctype}
    )
    assert posted.status_code in (401, 403)
    # A token of one project does not open another.
    other = make_project(database)
    elsewhere = key_url(site.live.url, site.token, other)
    assert CollectEmulator(elsewhere).request("GET", f"{elsewhere}/formList").status_code in (401, 403, 404)


@pytest.fixture(scope="module")
def tight_server(make_env_module: Any) -> Iterator[tuple[LiveServer, int, str]]:
    """A server that accepts at most 64 KB per request and 4 KB of XML."""
    env = make_env_module()
    app: Flask = env.app(max_request_bytes=64 * 1024, max_xml_bytes=4096)
    live, stop = serve_in_thread(app)
    project_id = make_project(live.database)
    publish_xform(app, project_id, small_xform())
    _, token = make_device(app, project_id)
    yield live, project_id, token or ""
    stop()


@pytest.fixture(scope="module")
def make_env_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from server import migrate
    from tests.conftest import AppEnv, new_database_target

    made: list[AppEnv] = []

    def factory() -> AppEnv:
        data_dir = tmp_path_factory.mktemp("sarhad-tight")
        target = new_database_target(data_dir)
        migrate.upgrade(target.url)
        made.append(AppEnv(data_dir, target))
        return made[-1]

    yield factory
    for env in made:
        env.target.drop()


def test_oversize_bodies_are_413_and_store_nothing(tight_server: tuple[LiveServer, int, str]) -> None:
    live, project_id, token = tight_server
    url = key_url(live.url, token, project_id)
    collect = CollectEmulator(url)
    assert collect.head_submission() == 64 * 1024
    big_file = small_instance(new_uuid())
    body, ctype = multipart_body(big_file, [("photo.jpg", b"x" * 100 * 1024)])
    response = collect.request("POST", f"{url}/submission", data=body, headers={"Content-Type": ctype})
    assert_openrosa_xml(response, 413)
    big_xml = small_instance(new_uuid(), village="ж" * 4000)
    body, ctype = multipart_body(big_xml, [])
    response = collect.request("POST", f"{url}/submission", data=body, headers={"Content-Type": ctype})
    assert_openrosa_xml(response, 413)
    assert _submission_count(live.database) == 0
    # Collect itself splits by the advertised limit, so the same photo in a big submission gets through.
    model = read_form(collect.download_forms()["small"].xml)
    instance = fill(model, rng=random.Random(5), repeat_rows=2)
    instance.files = {n: d * 200 for n, d in instance.files.items()}  # ~60 KB each
    sent = collect.submit(instance)
    assert sent.sent and len(sent.posts) > 1


def test_cut_connection_leaves_nothing_half_written(site: Site) -> None:
    xml = small_instance(new_uuid())
    body, ctype = multipart_body(xml, [("photo.jpg", b"\xff\xd8" + b"p" * 200_000)])
    host, port = site.live.url.removeprefix("http://").split(":")
    path = f"/v1/key/{site.token}/projects/{site.project_id}/submission?deviceID=collect:cutcutcutcutcut1"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nX-OpenRosa-Version: 1.0\r\n\r\n"
    ).encode()
    before = _submission_count(site.database)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + body[: len(body) // 2])
    time.sleep(0.5)
    assert _submission_count(site.database) == before
    assert_no_staging_left(site.database)
    # The server is fine and the whole submission, sent again, is stored once.
    body_ok, ctype_ok = multipart_body(xml, [("photo.jpg", b"\xff\xd8" + b"p" * 200_000)])
    assert _post(site, body_ok, ctype_ok).status_code == 201
    assert _submission_count(site.database) == before + 1


def test_links_use_the_configured_public_url(make_env_module: Any) -> None:
    """Behind a proxy the request's own host is not what tablets reach: BASE_URL is used for links."""
    env = make_env_module()
    app: Flask = env.app(base_url="https://sarhad.example.tj/")
    live, stop = serve_in_thread(app)
    try:
        project_id = make_project(live.database)
        publish_xlsform(app, project_id, FORMS_DIR / "youth_consultation.xlsx")
        _, token = make_device(app, project_id)
        collect = CollectEmulator(key_url(live.url, token, project_id))
        (listed,) = collect.form_list()
        prefix = f"https://sarhad.example.tj/v1/key/{token}/projects/{project_id}/forms/youth_consultation"
        assert listed.download_url == prefix + ".xml"
        assert listed.manifest_url == prefix + "/manifest"
        media = collect.manifest(listed.manifest_url.replace("https://sarhad.example.tj", live.url))
        assert {m.download_url for m in media} == {
            f"{prefix}/attachments/{n}" for n in ("districts.csv", "regions.csv")
        }
    finally:
        stop()
