"""The one ingest path, called as hubs, folders and the API call it: every branch against a real database.

Each test works in a project of its own on the module's store (SQLite, or PostgreSQL when
SARHAD_TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from server.db import Database
from server.errors import Problem
from server.ingest import IngestResult, Outcome, ingest
from server.models import (
    AuditEvent,
    Conflict,
    ConflictAttachment,
    Form,
    FormState,
    Project,
    ReviewState,
    Source,
    Submission,
    SubmissionVersion,
)
from tests.openrosa_setup import (
    attachments_of,
    counts,
    make_project,
    new_uuid,
    publish_xform,
    small_instance,
    small_xform,
    streams,
)

JPEG = b"\xff\xd8\xff\xe0 a photo " * 50
NOTE = b"\xff\xd8\xff\xe0 a note " * 40


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send(
    app: Flask,
    project_id: int,
    xml: bytes,
    files: Mapping[str, bytes] | None = None,
    **kwargs: Any,
) -> IngestResult:
    database: Database = app.extensions["sarhad.db"]
    with app.app_context(), database.write() as w:
        project = w.session.get(Project, project_id)
        assert project is not None
        return ingest(w, project=project, xml_bytes=xml, attachments=streams(files or {}), **kwargs)


@pytest.fixture
def small(app: Flask, database: Database) -> tuple[int, int]:
    """(project id, form pk) of a fresh project with the small form published."""
    project_id = make_project(database)
    return project_id, publish_xform(app, project_id, small_xform())


def test_new_submission_records_xml_provenance_and_expected_files(
    app: Flask, database: Database, small: Any
) -> None:
    project_id, form_id = small
    iid = new_uuid()
    xml = small_instance(iid, notes=("n1.jpg", "n2.jpg"), audit=True)
    result = send(
        app, project_id, xml, {"photo.jpg": JPEG},
        device_id="collect:abcdefghijklmnop", user_agent="org.odk.collect.android/v2024.3.1",
    )  # fmt: skip
    assert result.outcome is Outcome.CREATED and result.status == 201
    assert result.expected == ["photo.jpg", "n1.jpg", "n2.jpg", "audit.csv"]
    assert sorted(result.missing) == ["audit.csv", "n1.jpg", "n2.jpg"]
    with database.read() as session:
        version = session.scalar(select(SubmissionVersion).where(SubmissionVersion.instance_id == iid))
        assert version is not None
        assert version.xml.encode() == xml and version.sha256 == sha(xml)
        assert version.device_id == "collect:abcdefghijklmnop"
        assert version.user_agent == "org.odk.collect.android/v2024.3.1"
        assert version.source == Source.DEVICE and version.received_at is not None
        assert version.instance_name == "Vanj" and not version.encrypted
        submission = session.get(Submission, version.submission_id)
        assert submission is not None and submission.current_version_id == version.id
        assert submission.review_state == ReviewState.RECEIVED
    files = attachments_of(database, form_id, iid)
    assert files == {"photo.jpg": sha(JPEG), "n1.jpg": None, "n2.jpg": None, "audit.csv": None}
    assert database.blobs.read_bytes(sha(JPEG)) == JPEG


def test_identical_resend_is_success_and_adds_missing_files(
    app: Flask, database: Database, small: Any
) -> None:
    project_id, form_id = small
    iid = new_uuid()
    xml = small_instance(iid, notes=("n1.jpg",))
    assert send(app, project_id, xml).outcome is Outcome.CREATED
    again = send(app, project_id, xml)
    assert again.outcome is Outcome.DUPLICATE and again.status == 201
    late = send(app, project_id, xml, {"photo.jpg": JPEG})
    assert late.outcome is Outcome.UPDATED_ATTACHMENTS and late.missing == ["n1.jpg"]
    last = send(app, project_id, xml, {"photo.jpg": JPEG, "n1.jpg": NOTE})
    assert last.outcome is Outcome.UPDATED_ATTACHMENTS and last.missing == []
    assert send(app, project_id, xml, {"photo.jpg": JPEG, "n1.jpg": NOTE}).outcome is Outcome.DUPLICATE
    assert counts(database, form_id) == {"submissions": 1, "versions": 1, "conflicts": 0}
    assert attachments_of(database, form_id, iid) == {"photo.jpg": sha(JPEG), "n1.jpg": sha(NOTE)}


def test_split_upload_merges_into_one_submission(app: Flask, database: Database, small: Any) -> None:
    project_id, form_id = small
    iid = new_uuid()
    xml = small_instance(iid, notes=("n1.jpg", "n2.jpg"))
    first = send(app, project_id, xml, {"photo.jpg": JPEG}, incomplete=True)
    assert first.outcome is Outcome.CREATED and "part" in first.message
    second = send(app, project_id, xml, {"n1.jpg": NOTE}, incomplete=True)
    third = send(app, project_id, xml, {"n2.jpg": NOTE + b"2"})
    assert (second.outcome, third.outcome) == (Outcome.UPDATED_ATTACHMENTS, Outcome.UPDATED_ATTACHMENTS)
    assert third.missing == []
    assert counts(database, form_id)["versions"] == 1
    assert set(attachments_of(database, form_id, iid).values()) == {sha(JPEG), sha(NOTE), sha(NOTE + b"2")}


def test_file_the_xml_does_not_name_is_kept(app: Flask, database: Database, small: Any) -> None:
    project_id, form_id = small
    iid = new_uuid()
    send(app, project_id, small_instance(iid), {"photo.jpg": JPEG, "extra.txt": b"not named"})
    assert attachments_of(database, form_id, iid) == {"photo.jpg": sha(JPEG), "extra.txt": sha(b"not named")}


def test_same_id_other_xml_is_kept_once_as_a_conflict_and_audited(
    app: Flask, database: Database, small: Any
) -> None:
    project_id, form_id = small
    iid = new_uuid()
    original = small_instance(iid, village="Vanj")
    send(app, project_id, original, {"photo.jpg": JPEG})
    other = small_instance(iid, village="Rushon")
    result = send(app, project_id, other, {"photo.jpg": NOTE}, device_id="collect:conflicting000001")
    assert result.outcome is Outcome.CONFLICT and result.status == 409
    assert "kept for the coordinator" in result.message
    assert result.problem().status == 409
    again = send(app, project_id, other, {"photo.jpg": NOTE})
    assert again.outcome is Outcome.CONFLICT
    assert counts(database, form_id) == {"submissions": 1, "versions": 1, "conflicts": 1}
    with database.read() as session:
        conflict = session.scalar(select(Conflict).where(Conflict.form_id == form_id))
        assert conflict is not None
        assert conflict.xml.encode() == other and conflict.sha256 == sha(other)
        assert conflict.reason == "instance_id_taken" and conflict.device_id == "collect:conflicting000001"
        kept = session.execute(
            select(ConflictAttachment.name, ConflictAttachment.blob_sha256).where(
                ConflictAttachment.conflict_id == conflict.id
            )
        ).all()
        assert [tuple(r) for r in kept] == [("photo.jpg", sha(NOTE))]
        audited = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "submission.conflict", AuditEvent.target_id == str(conflict.id)
            )
        ).all()
        assert len(audited) == 1 and audited[0].details["instanceId"] == iid
        # The submission itself is untouched.
        version = session.scalar(select(SubmissionVersion).where(SubmissionVersion.instance_id == iid))
        assert version is not None and version.xml.encode() == original
    assert database.blobs.read_bytes(sha(NOTE)) == NOTE


def test_edit_makes_a_new_current_version_and_keeps_history(
    app: Flask, database: Database, small: Any
) -> None:
    project_id, form_id = small
    first_id, edit_id = new_uuid(), new_uuid()
    send(app, project_id, small_instance(first_id, notes=("n1.jpg",)), {"photo.jpg": JPEG, "n1.jpg": NOTE})
    edit_xml = small_instance(edit_id, village="Vanj (corrected)", notes=("n1.jpg",), deprecated_id=first_id)
    new_photo = JPEG + b"retaken"
    result = send(app, project_id, edit_xml, {"photo.jpg": new_photo})
    assert result.outcome is Outcome.EDITED and result.status == 201
    assert result.missing == []  # n1.jpg carried over from the version it replaces
    with database.read() as session:
        submission = session.scalar(select(Submission).where(Submission.instance_id == first_id))
        assert submission is not None
        versions = session.scalars(
            select(SubmissionVersion)
            .where(SubmissionVersion.submission_id == submission.id)
            .order_by(SubmissionVersion.id)
        ).all()
        assert [v.instance_id for v in versions] == [first_id, edit_id]
        assert versions[1].deprecated_id == first_id
        assert submission.current_version_id == versions[1].id
        assert submission.review_state == ReviewState.EDITED
    assert attachments_of(database, form_id, edit_id) == {"photo.jpg": sha(new_photo), "n1.jpg": sha(NOTE)}
    assert attachments_of(database, form_id, first_id) == {"photo.jpg": sha(JPEG), "n1.jpg": sha(NOTE)}
    # Resending the edit is a plain resend; resending the original still succeeds and changes nothing.
    assert send(app, project_id, edit_xml).outcome is Outcome.DUPLICATE
    assert send(app, project_id, small_instance(first_id, notes=("n1.jpg",))).outcome is Outcome.DUPLICATE
    assert counts(database, form_id) == {"submissions": 1, "versions": 2, "conflicts": 0}


def test_stale_and_unknown_edits_are_kept_as_conflicts(app: Flask, database: Database, small: Any) -> None:
    project_id, form_id = small
    first, edit_a, edit_b, orphan = new_uuid(), new_uuid(), new_uuid(), new_uuid()
    send(app, project_id, small_instance(first))
    assert send(app, project_id, small_instance(edit_a, deprecated_id=first)).outcome is Outcome.EDITED
    stale = send(app, project_id, small_instance(edit_b, village="other", deprecated_id=first))
    assert stale.outcome is Outcome.CONFLICT and "older version" in stale.message
    unknown = send(app, project_id, small_instance(orphan, deprecated_id=new_uuid()))
    assert unknown.outcome is Outcome.CONFLICT and "does not have" in unknown.message
    with database.read() as session:
        reasons = dict(
            session.execute(
                select(Conflict.instance_id, Conflict.reason).where(Conflict.form_id == form_id)
            ).all()
        )
    assert reasons == {edit_b: "stale_edit", orphan: "unknown_deprecated"}
    assert counts(database, form_id)["versions"] == 2


def test_resent_file_with_other_bytes_keeps_both(app: Flask, database: Database, small: Any) -> None:
    project_id, form_id = small
    iid = new_uuid()
    xml = small_instance(iid)
    send(app, project_id, xml, {"photo.jpg": JPEG})
    result = send(app, project_id, xml, {"photo.jpg": NOTE})
    assert result.accepted
    assert attachments_of(database, form_id, iid) == {"photo.jpg": sha(JPEG)}
    with database.read() as session:
        conflict = session.scalar(select(Conflict).where(Conflict.form_id == form_id))
        assert conflict is not None and conflict.reason == "attachment_differs"
        blobs = session.scalars(
            select(ConflictAttachment.blob_sha256).where(ConflictAttachment.conflict_id == conflict.id)
        ).all()
        assert blobs == [sha(NOTE)]


def test_encrypted_submission_is_stored_as_received(app: Flask, database: Database, small: Any) -> None:
    project_id, _ = small
    iid = new_uuid()
    envelope = (
        '<data xmlns="http://www.opendatakit.org/xforms/encrypted" xmlns:orx="http://openrosa.org/xforms" '
        f'id="small" version="1" encrypted="yes"><base64EncryptedKey>S0VZ</base64EncryptedKey>'
        f"<orx:meta><orx:instanceID>{iid}</orx:instanceID></orx:meta>"
        "<media><file>photo.jpg.enc</file></media><encryptedXmlFile>submission.xml.enc</encryptedXmlFile>"
        "<base64EncryptedElementSignature>U0lH</base64EncryptedElementSignature></data>"
    ).encode()
    result = send(app, project_id, envelope, {"submission.xml.enc": b"\x01cipher", "photo.jpg.enc": b"\x02c"})
    assert result.outcome is Outcome.CREATED and result.missing == []
    assert result.expected == ["photo.jpg.enc", "submission.xml.enc"]
    with database.read() as session:
        version = session.scalar(select(SubmissionVersion).where(SubmissionVersion.instance_id == iid))
        assert version is not None and version.encrypted and version.xml.encode() == envelope


def _refused(
    app: Flask, project_id: int, xml: bytes, files: Mapping[str, bytes] | None = None, **kw: Any
) -> Problem:
    with pytest.raises(Problem) as caught:
        send(app, project_id, xml, files, **kw)
    return caught.value


def test_unknown_form_version_and_closed_form(app: Flask, database: Database, small: Any) -> None:
    project_id, form_id = small
    assert _refused(app, project_id, small_instance(new_uuid(), form_id="nope")).status == 404
    problem = _refused(app, project_id, small_instance(new_uuid(), version="7"))
    assert problem.status == 404 and "no published version '7'" in problem.message
    with database.write() as w:
        form = w.session.get(Form, form_id)
        assert form is not None
        form.state = FormState.CLOSED
    closed = _refused(app, project_id, small_instance(new_uuid()))
    assert closed.status == 409 and "closed" in closed.message
    # What a hub collected before the form was closed still reaches central.
    assert send(app, project_id, small_instance(new_uuid()), source=Source.HUB).outcome is Outcome.CREATED
    assert counts(database, form_id)["submissions"] == 1


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<data id="small" version="1"><village>&lol3;</village><meta><instanceID>uuid:x</instanceID></meta></data>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE data [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<data id="small" version="1"><village>&xxe;</village><meta><instanceID>uuid:y</instanceID></meta></data>"""
UTF16_DOCTYPE = (
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d [<!ENTITY e "x">]><data id="small"/>'.encode("utf-16")
)


@pytest.mark.parametrize(
    ("xml", "words"),
    [
        (BILLION_LAUGHS, "DOCTYPE"),
        (EXTERNAL_ENTITY, "DOCTYPE"),
        (UTF16_DOCTYPE, "UTF-8"),
        (b"<data id='small' version='1'><village>unclosed</data>", "not well-formed"),
        (b"<data id='small' version='1'>" + b"<g>" * 300 + b"</g>" * 300 + b"</data>", "not well-formed"),
        (b"<data version='1'><meta><instanceID>uuid:z</instanceID></meta></data>", "which form"),
        (b"<data id='small' version='1'><village>v</village></data>", "instanceID"),
        (b"<data id='small' version='1'><v>\xff\xfe</v><meta><instanceID>u</instanceID></meta></data>",
         "UTF-8"),
        (b"   ", "empty"),
    ],
    ids=["billion-laughs", "external-entity", "utf16-doctype", "malformed", "too-deep", "no-form-id",
         "no-instance-id", "not-utf8", "empty"],
)  # fmt: skip
def test_hostile_or_broken_xml_is_refused_and_nothing_stored(
    app: Flask, database: Database, small: Any, xml: bytes, words: str
) -> None:
    project_id, form_id = small
    problem = _refused(app, project_id, xml)
    assert problem.status == 400 and words in problem.message
    assert counts(database, form_id) == {"submissions": 0, "versions": 0, "conflicts": 0}


def test_oversize_xml_is_413(app: Flask, small: Any) -> None:
    project_id, _ = small
    big = small_instance(new_uuid(), village="x" * 5000)
    assert _refused(app, project_id, big, max_xml_bytes=1000).status == 413


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b.jpg", "a\\b.jpg", "nul\x00.jpg", "x" * 300, ""])
def test_attachment_names_that_look_like_paths_are_refused(
    app: Flask, database: Database, small: Any, name: str
) -> None:
    project_id, form_id = small
    assert _refused(app, project_id, small_instance(new_uuid()), {name: b"x"}).status == 400
    assert counts(database, form_id)["submissions"] == 0


def _race(app: Flask, project_id: int, xml: bytes, files: Mapping[str, bytes], n: int = 8) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = send(app, project_id, xml, files).outcome
        except Exception as exc:  # recorded and asserted on below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_identical_resends_at_the_same_moment(app: Flask, database: Database, small: Any) -> None:
    project_id, form_id = small
    iid = new_uuid()
    outcomes = _race(app, project_id, small_instance(iid), {"photo.jpg": JPEG})
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert outcomes.count(Outcome.CREATED) == 1
    assert set(outcomes) <= {Outcome.CREATED, Outcome.DUPLICATE}
    assert counts(database, form_id) == {"submissions": 1, "versions": 1, "conflicts": 0}
    assert attachments_of(database, form_id, iid) == {"photo.jpg": sha(JPEG)}


def test_identical_conflicts_at_the_same_moment_are_kept_once(
    app: Flask, database: Database, small: Any
) -> None:
    project_id, form_id = small
    iid = new_uuid()
    send(app, project_id, small_instance(iid))
    outcomes = _race(app, project_id, small_instance(iid, village="again"), {"photo.jpg": NOTE})
    assert outcomes == [Outcome.CONFLICT] * 8
    assert counts(database, form_id) == {"submissions": 1, "versions": 1, "conflicts": 1}
