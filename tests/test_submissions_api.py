"""``/v1/projects/{p}/forms/{f}/submissions`` over real HTTP: Central's JSON, XML, review state, comments,
versions and attachments (chunked uploads), with personal data redacted for analysts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from lxml import etree
from sqlalchemy import select

from server.datasets.redact import pseudonym
from server.models import AuditEvent, Conflict, Project
from tests.conftest import serve_in_thread
from tests.datasets_fixtures import WebUser, make_app_user, make_project, publish_form, submit, web_user

FORM = """
| settings |
| | form_id | version | namespaces |
| | survey1 | 1 | sarhad="https://sarhad.tj/xforms" |
| survey |
| | type | name | label | bind::sarhad:sensitivity |
| | text | respondent | Name | personal |
| | integer | phone | Phone | personal |
| | integer | age | Age | |
| | decimal | score | Score | |
| | date | seen | Seen | |
| | select_multiple yn | many | Many | |
| | geopoint | where | Where | |
| | begin_group | grp | Group | |
| | text | note | Note | |
| | image | photo | Photo | |
| | end_group | | | |
| | begin_repeat | visit | Visit | |
| | text | place | Place | |
| | begin_repeat | person | Person | |
| | integer | years | Years | |
| | end_repeat | | | |
| | end_repeat | | | |
| | image | idcard | ID card | personal |
| choices |
| | list_name | name | label |
| | yn | yes | Yes |
| | yn | no | No |
"""
DEVICE = "collect:abcdef0123456789"


def instance(
    n: int,
    name: str,
    age: int | None,
    *,
    visits: tuple[tuple[str, tuple[int, ...]], ...] = (),
    score: str = "",
    seen: str = "",
    many: str = "",
    where: str = "",
    note: str = "",
    photo: str = "",
    idcard: str = "",
    phone: str = "",
) -> str:
    visit_xml = "".join(
        f"<visit><place>{place}</place>"
        + "".join(f"<person><years>{y}</years></person>" for y in years)
        + "</visit>"
        for place, years in visits
    )
    return (
        f'<data id="survey1" version="1"><respondent>{name}</respondent><phone>{phone}</phone>'
        f"<age>{'' if age is None else age}</age><score>{score}</score><seen>{seen}</seen>"
        f"<many>{many}</many><where>{where}</where><grp><note>{note}</note><photo>{photo}</photo></grp>"
        f"{visit_xml}<idcard>{idcard}</idcard>"
        f"<meta><instanceID>uuid:s-{n}</instanceID></meta></data>"
    )


SUB1 = instance(
    1,
    "Alice",
    30,
    visits=(("Dushanbe", (40, 41)), ("Khujand", ())),
    score="1.5",
    seen="2026-01-05",
    many="yes no",
    where="38.5612 68.7734 800 5",
    note="first",
    photo="p1.jpg",
    idcard="id1.jpg",
    phone="900123",
)
SUB2 = instance(2, "Bob", 17, note="second")
SUB3 = instance(3, "Carol", 45, visits=(("Kulob", (70,)),), score="2.25", where="37.9 69.8")
TEST_SUB = instance(9, "Trainee answer", 1)


@dataclass
class Survey:
    url: str
    project: int
    key: bytes
    users: dict[str, WebUser]
    live: Any

    def form_url(self, path: str = "") -> str:
        return f"{self.url}/v1/projects/{self.project}/forms/survey1{path}"

    def get(self, path: str, who: str = "admin", **kwargs: Any) -> requests.Response:
        return requests.get(self.form_url(path), headers=self.users[who].headers, timeout=60, **kwargs)


def make_survey(live_server: Any, prefix: str) -> Survey:
    db, app = live_server.database, live_server.app
    project_id = make_project(db, f"{prefix}-project")
    other_project = make_project(db, f"{prefix}-other")
    publish_form(db, app, project_id, FORM.encode(), "survey1.md")
    facilitator = make_app_user(db, project_id, "Facilitator Nodira")
    trainee = make_app_user(db, project_id, "Trainee", test=True)
    submit(db, app, project_id, SUB1, {"p1.jpg": b"PHOTO-1", "id1.jpg": b"IDCARD-1"},
           app_user_id=facilitator, device_id=DEVICE)  # fmt: skip
    submit(db, app, project_id, SUB2, app_user_id=facilitator, device_id=DEVICE)
    submit(db, app, project_id, SUB3, app_user_id=facilitator, device_id=DEVICE)
    submit(db, app, project_id, TEST_SUB, app_user_id=trainee, device_id=DEVICE)
    users = {
        role: web_user(live_server, f"{prefix}-{role}@example.tj", role, project_id)
        for role in ("admin", "coordinator", "analyst")
    }
    users["outsider"] = web_user(live_server, f"{prefix}-outsider@example.tj", "admin", other_project)
    with db.read() as session:
        project = session.get(Project, project_id)
        assert project is not None
        key = bytes.fromhex(project.pseudonym_key)
    return Survey(live_server.url, project_id, key, users, live_server)


@pytest.fixture(scope="module")
def survey(live_server: Any) -> Iterator[Survey]:
    yield make_survey(live_server, "subs")


# ---- list and read ------------------------------------------------------------------------------------


def test_list_has_centrals_keys_newest_first(survey: Survey) -> None:
    reply = survey.get("/submissions")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [s["instanceId"] for s in body] == ["uuid:s-9", "uuid:s-3", "uuid:s-2", "uuid:s-1"]
    first = body[-1]
    for key in (
        "instanceId",
        "submitterId",
        "deviceId",
        "createdAt",
        "updatedAt",
        "reviewState",
        "currentVersion",
    ):
        assert key in first
    assert isinstance(first["submitterId"], int)
    assert first["deviceId"] == DEVICE
    assert first["reviewState"] is None  # nobody reviewed it yet: Central's null
    assert first["createdAt"].endswith("Z")
    assert first["currentVersion"]["instanceId"] == "uuid:s-1"
    assert first["currentVersion"]["current"] is True
    assert first["submitter"]["displayName"] == "Facilitator Nodira"


def test_analyst_sees_pseudonymised_device_and_submitter(survey: Survey) -> None:
    body = survey.get("/submissions/uuid:s-1", who="analyst").json()
    assert body["deviceId"] == pseudonym(survey.key, DEVICE)
    assert body["submitter"]["displayName"] == pseudonym(survey.key, "Facilitator Nodira")
    assert body["instanceName"] is None


def test_single_submission_and_unknown_ones(survey: Survey) -> None:
    reply = survey.get("/submissions/uuid:s-2")
    assert reply.status_code == 200
    assert reply.json()["instanceId"] == "uuid:s-2"
    missing = survey.get("/submissions/uuid:nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == "404.1"
    assert (
        requests.get(
            f"{survey.url}/v1/projects/{survey.project}/forms/nope/submissions",
            headers=survey.users["admin"].headers,
            timeout=30,
        ).status_code
        == 404
    )


def test_roles_and_credentials(survey: Survey) -> None:
    assert requests.get(survey.form_url("/submissions"), timeout=30).status_code == 401
    outsider = survey.get("/submissions", who="outsider")
    assert outsider.status_code == 403
    assert outsider.json()["code"] == "403.1"
    bad_token = requests.get(
        survey.form_url("/submissions"), headers={"Authorization": "Bearer nope"}, timeout=30
    )
    assert bad_token.status_code == 401


def test_xml_is_raw_for_admin_and_redacted_for_analyst(survey: Survey) -> None:
    raw = survey.get("/submissions/uuid:s-1.xml")
    assert raw.status_code == 200
    assert raw.headers["Content-Type"].startswith("application/xml")
    assert raw.content.decode() == SUB1
    redacted = etree.fromstring(survey.get("/submissions/uuid:s-1.xml", who="analyst").content)
    assert redacted.findtext("respondent") == pseudonym(survey.key, "Alice")
    assert redacted.findtext("phone") == pseudonym(survey.key, "900123")
    assert not redacted.findtext("idcard")  # a personal photo: dropped
    assert redacted.findtext("age") == "30"  # not personal: kept
    assert redacted.findtext("grp/photo") == "p1.jpg"
    assert b"Alice" not in survey.get("/submissions/uuid:s-1.xml", who="analyst").content


def test_versions(survey: Survey) -> None:
    reply = survey.get("/submissions/uuid:s-1/versions")
    assert reply.status_code == 200
    versions = reply.json()
    assert [v["instanceId"] for v in versions] == ["uuid:s-1"]
    assert versions[0]["current"] is True
    assert isinstance(versions[0]["submitterId"], int)


# ---- review and comments ------------------------------------------------------------------------------


def test_review_state_by_role_and_audited(survey: Survey) -> None:
    url = survey.form_url("/submissions/uuid:s-2")
    analyst = requests.patch(
        url, json={"reviewState": "approved"}, headers=survey.users["analyst"].headers, timeout=30
    )
    assert analyst.status_code == 403
    bad = requests.patch(
        url, json={"reviewState": "great"}, headers=survey.users["coordinator"].headers, timeout=30
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "400.1"
    not_json = requests.patch(url, data="x", headers=survey.users["coordinator"].headers, timeout=30)
    assert not_json.status_code == 400
    ok = requests.patch(
        url, json={"reviewState": "hasIssues"}, headers=survey.users["coordinator"].headers, timeout=30
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["reviewState"] == "hasIssues"
    assert ok.json()["updatedAt"] is not None
    assert survey.get("/submissions/uuid:s-2").json()["reviewState"] == "hasIssues"
    back = requests.patch(
        url, json={"reviewState": "received"}, headers=survey.users["admin"].headers, timeout=30
    )
    assert back.json()["reviewState"] is None
    with survey.live.database.read() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "submission.review").order_by(AuditEvent.id)
        ).all()
        changes = [
            (e.details["before"], e.details["after"]) for e in events if e.project_id == survey.project
        ]
    assert changes[-2:] == [("received", "hasIssues"), ("hasIssues", "received")]


def test_comments_by_any_role(survey: Survey) -> None:
    url = survey.form_url("/submissions/uuid:s-3/comments")
    for who, text in (("analyst", "Looks odd"), ("coordinator", "Checked with facilitator")):
        reply = requests.post(url, json={"body": text}, headers=survey.users[who].headers, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["body"] == text
        assert isinstance(reply.json()["actorId"], int)
    listed = survey.get("/submissions/uuid:s-3/comments", who="analyst").json()
    assert [c["body"] for c in listed] == ["Looks odd", "Checked with facilitator"]
    empty = requests.post(url, json={"body": ""}, headers=survey.users["analyst"].headers, timeout=30)
    assert empty.status_code == 400
    outsider = requests.post(url, json={"body": "x"}, headers=survey.users["outsider"].headers, timeout=30)
    assert outsider.status_code == 403


# ---- attachments --------------------------------------------------------------------------------------


def test_attachment_list_and_download(survey: Survey) -> None:
    listed = survey.get("/submissions/uuid:s-1/attachments").json()
    assert sorted(listed, key=lambda a: a["name"]) == [
        {"name": "id1.jpg", "exists": True},
        {"name": "p1.jpg", "exists": True},
    ]
    photo = survey.get("/submissions/uuid:s-1/attachments/p1.jpg")
    assert photo.status_code == 200
    assert photo.content == b"PHOTO-1"
    assert photo.headers["Content-Type"] == "image/jpeg"
    # The ID card belongs to a personal question: an analyst neither sees nor gets it.
    assert survey.get("/submissions/uuid:s-1/attachments", who="analyst").json() == [
        {"name": "p1.jpg", "exists": True}
    ]
    withheld = survey.get("/submissions/uuid:s-1/attachments/id1.jpg", who="analyst")
    assert withheld.status_code == 403
    assert survey.get("/submissions/uuid:s-1/attachments/other.jpg").status_code == 404


def test_chunked_attachment_upload(survey: Survey) -> None:
    """pyodk uploads with Transfer-Encoding: chunked (no Content-Length): the whole body must be kept."""
    xml = instance(21, "Farrukh", 33, photo="p21.jpg").replace("uuid:s-21", "uuid:chunked-21")
    coordinator = survey.users["coordinator"].headers
    created = requests.post(
        survey.form_url("/submissions"),
        data=xml,
        headers={**coordinator, "Content-Type": "application/xml"},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    payload = bytes(range(256)) * 1000  # 256 kB in many chunks

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 16384):
            yield payload[start : start + 16384]

    url = survey.form_url("/submissions/uuid:chunked-21/attachments/p21.jpg")
    denied = requests.post(url, data=b"x", headers=survey.users["analyst"].headers, timeout=30)
    assert denied.status_code == 403
    headers = {**coordinator, "Content-Type": "image/jpeg"}
    reply = requests.post(url, data=chunks(), headers=headers, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"success": True}
    assert survey.get("/submissions/uuid:chunked-21/attachments/p21.jpg").content == payload
    unknown = requests.post(
        survey.form_url("/submissions/uuid:s-1/attachments/nope.jpg"), data=b"x", headers=headers, timeout=30
    )
    assert unknown.status_code == 404
    with survey.live.database.read() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "submission.attachment")
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None and event.details["name"] == "p21.jpg"
        assert event.details["sha256"] == hashlib.sha256(payload).hexdigest()


def test_late_attachment_goes_through_ingest_and_never_replaces(survey: Survey) -> None:
    """A file posted on its own is decided like any resend: filled when missing, the same bytes again a
    success, other bytes kept beside the held file in the conflict store (409), never in its place."""
    xml = instance(22, "Gulnora", 29, photo="p22.jpg").replace("uuid:s-22", "uuid:late-22")
    coordinator = survey.users["coordinator"].headers
    created = requests.post(
        survey.form_url("/submissions"),
        data=xml,
        headers={**coordinator, "Content-Type": "application/xml"},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    url = survey.form_url("/submissions/uuid:late-22/attachments/p22.jpg")

    def audits(action: str) -> list[AuditEvent]:
        with survey.live.database.read() as session:
            return list(
                session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.action == action,
                        AuditEvent.details["instanceId" if action == "submission.conflict" else "instance_id"]
                        .as_string()
                        .in_(["uuid:late-22"]),
                    )
                )
            )

    first = requests.post(url, data=b"FIRST-PHOTO", headers=coordinator, timeout=30)
    assert first.status_code == 200, first.text
    assert len(audits("submission.attachment")) == 1
    again = requests.post(url, data=b"FIRST-PHOTO", headers=coordinator, timeout=30)
    assert again.status_code == 200 and again.json() == {"success": True}
    assert len(audits("submission.attachment")) == 1  # nothing changed, nothing to audit
    for _ in range(2):  # the same differing file twice is kept once
        other = requests.post(url, data=b"OTHER-PHOTO", headers=coordinator, timeout=30)
        assert other.status_code == 409, other.text
        body = other.json()
        assert body["code"] == "409.3" and body["details"]["reason"] == "attachment_differs"
        assert body["details"]["name"] == "p22.jpg"
    assert survey.get("/submissions/uuid:late-22/attachments/p22.jpg").content == b"FIRST-PHOTO"
    with survey.live.database.read() as session:
        conflicts = list(session.scalars(select(Conflict).where(Conflict.instance_id == "uuid:late-22")))
        assert [c.reason for c in conflicts] == ["attachment_differs"]
        kept = [(a.name, a.blob_sha256) for a in conflicts[0].attachments]
        assert kept == [("p22.jpg", hashlib.sha256(b"OTHER-PHOTO").hexdigest())]
    blob = survey.live.database.blobs.path(hashlib.sha256(b"OTHER-PHOTO").hexdigest())
    assert blob.read_bytes() == b"OTHER-PHOTO"
    assert len(audits("submission.conflict")) == 1


def test_closed_form_still_takes_late_files_of_accepted_submissions(live_server: Any) -> None:
    closing = make_survey(live_server, "closed")
    coordinator = closing.users["coordinator"].headers
    xml = instance(23, "Hurshed", 41, photo="p23.jpg").replace("uuid:s-23", "uuid:closed-23")
    made = requests.post(
        closing.form_url("/submissions"),
        data=xml,
        headers={**coordinator, "Content-Type": "application/xml"},
        timeout=30,
    )
    assert made.status_code == 200, made.text
    closed = requests.patch(closing.form_url(), json={"state": "closed"}, headers=coordinator, timeout=30)
    assert closed.status_code == 200, closed.text
    other = xml.replace("uuid:closed-23", "uuid:closed-24")
    refused = requests.post(
        closing.form_url("/submissions"),
        data=other,
        headers={**coordinator, "Content-Type": "application/xml"},
        timeout=30,
    )
    assert refused.status_code == 409 and refused.json()["code"] == "409.2"
    url = closing.form_url("/submissions/uuid:closed-23/attachments/p23.jpg")
    late = requests.post(url, data=b"LATE PHOTO", headers=coordinator, timeout=30)
    assert late.status_code == 200, late.text
    assert closing.get("/submissions/uuid:closed-23/attachments/p23.jpg").content == b"LATE PHOTO"


def test_create_and_edit_submissions_from_xml(survey: Survey) -> None:
    xml = instance(20, "Dilnoza", 22, photo="p20.jpg").replace("uuid:s-20", "uuid:api-20")
    url = survey.form_url("/submissions")
    xml_type = {"Content-Type": "application/xml"}
    coordinator = {**survey.users["coordinator"].headers, **xml_type}
    analyst = {**survey.users["analyst"].headers, **xml_type}
    assert requests.post(url, data=xml, headers=analyst, timeout=30).status_code == 403
    reply = requests.post(url, data=xml, headers=coordinator, params={"deviceID": "pyodk-test"}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["instanceId"] == "uuid:api-20"
    assert body["source"] == "api" and body["submitter"]["type"] == "user"
    assert isinstance(body["submitterId"], int) and body["submitterId"] > 0
    assert survey.get("/submissions/uuid:api-20/attachments").json() == [{"name": "p20.jpg", "exists": False}]
    # The identical XML again is a resend: the same submission, nothing new.
    again = requests.post(url, data=xml, headers=coordinator, timeout=30)
    assert again.status_code == 200 and again.json()["instanceId"] == "uuid:api-20"
    # Other XML under the same instanceID is a conflict: kept for review, answered 409.
    changed = xml.replace("Dilnoza", "Someone else")
    conflict = requests.post(url, data=changed, headers=coordinator, timeout=30)
    assert conflict.status_code == 409 and conflict.json()["code"] == "409.3"
    # An edit: a new instanceID that names the old one as deprecatedID.
    edited = xml.replace(
        "<instanceID>uuid:api-20</instanceID>",
        "<instanceID>uuid:api-20-e1</instanceID><deprecatedID>uuid:api-20</deprecatedID>",
    ).replace("<age>22</age>", "<age>23</age>")
    put = requests.put(f"{url}/uuid:api-20", data=edited, headers=coordinator, timeout=30)
    assert put.status_code == 200, put.text
    assert put.json()["instanceId"] == "uuid:api-20"
    assert put.json()["currentVersion"]["instanceId"] == "uuid:api-20-e1"
    versions = survey.get("/submissions/uuid:api-20/versions").json()
    assert [(v["instanceId"], v["current"]) for v in versions] == [
        ("uuid:api-20-e1", True),
        ("uuid:api-20", False),
    ]
    assert survey.get("/submissions/uuid:api-20.xml").text == edited
    odata = survey.get(
        ".svc/Submissions", params={"$filter": "__id eq 'uuid:api-20'", "$select": "age,__system/edits"}
    )
    assert odata.json()["value"] == [{"__system": {"edits": 1}, "age": 23}]
    for bad, status in (("<data", 400), (xml.replace('id="survey1"', 'id="other"'), 400), ("", 400)):
        refused = requests.post(url, data=bad, headers=coordinator, timeout=30)
        assert refused.status_code == status, refused.text
        assert refused.json()["code"].startswith(str(status))


def test_too_large_chunked_upload_is_refused_and_nothing_kept(make_env: Any) -> None:
    """A chunked body has no Content-Length to check up front: the limit is enforced while reading."""
    env = make_env()
    live, stop = serve_in_thread(env.app(max_request_bytes=50_000))
    try:
        small = make_survey(live, "limit")
        url = small.form_url("/submissions/uuid:s-1/attachments/p1.jpg")

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"x" * 16384

        reply = requests.post(url, data=chunks(), headers=small.users["admin"].headers, timeout=60)
        assert reply.status_code == 413
        assert reply.json()["code"] == "413.1"
        assert small.get("/submissions/uuid:s-1/attachments/p1.jpg").content == b"PHOTO-1"
    finally:
        stop()
