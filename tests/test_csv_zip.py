# ruff: noqa: E501 — the expected CSV files are written out as they are.
"""``GET .../submissions.csv.zip`` in ODK Central's exact layout, checked as text against hand-written files.

The form has a group, a select_multiple, a geopoint, a repeat holding a group holding a nested repeat, a
photo, and two versions (``old_q`` only in version 1, ``new_q`` only in version 2). Central's rules:
root columns SubmissionDate, fields by group path joined with ``-`` (repeats left out), then KEY ...
FormVersion; repeat tables with paths relative to the repeat, then PARENT_KEY and KEY
(``uuid:x/person[1]/details/phone[2]``); geopoints split in four; media in ``media/``; submissions
newest first, each one's repeat rows in document order.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from server.models import AuditEvent
from tests.datasets_fixtures import WebUser, make_project, publish_form, submit, web_user

V1 = """
| settings |
| | form_id | version |
| | layout | 1 |
| survey |
| | type | name | label |
| | text | name | Name |
| | begin_group | hh | Household |
| | integer | size | Size |
| | select_multiple colour | colours | Colours |
| | end_group | | |
| | geopoint | loc | Location |
| | begin_repeat | person | Person |
| | text | pname | Name |
| | begin_group | details | Details |
| | integer | age | Age |
| | begin_repeat | phone | Phone |
| | text | number | Number |
| | end_repeat | | |
| | end_group | | |
| | end_repeat | | |
| | image | photo | Photo |
| | text | old_q | Old question |
| choices |
| | list_name | name | label |
| | colour | red | Red |
| | colour | blue | Blue |
| | colour | green | Green |
"""
V2 = V1.replace("| | layout | 1 |", "| | layout | 2 |").replace(
    "| | text | old_q | Old question |", "| | text | new_q | New question |"
)
SUB1 = (
    '<data id="layout" version="1"><name>Anvar, "the elder"</name><hh><size>4</size>'
    "<colours>red blue</colours></hh><loc>38.55 68.78 812.5 4.2</loc>"
    "<person><pname>Anvar</pname><details><age>40</age><phone><number>111</number></phone>"
    "<phone><number>222</number></phone></details></person>"
    "<person><pname>Zarina</pname><details><age>35</age></details></person>"
    "<photo>a.jpg</photo><old_q>multi\nline</old_q><meta><instanceID>uuid:one</instanceID></meta></data>"
)
SUB2 = (
    '<data id="layout" version="2"><name>Bahrom</name><hh><size/><colours>green</colours></hh><loc/>'
    "<person><pname>Bahrom</pname><details><age>7</age><phone><number>333</number></phone></details>"
    "</person><photo/><new_q>new</new_q><meta><instanceID>uuid:two</instanceID></meta></data>"
)
DEVICE = "collect:test0000000000"
META = "KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion"

ROOT = f'''SubmissionDate,name,hh-size,hh-colours,loc-Latitude,loc-Longitude,loc-Altitude,loc-Accuracy,photo,new_q,meta-instanceID,{META}
DATE,Bahrom,,green,,,,,,new,uuid:two,uuid:two,,,0,0,,,{DEVICE},0,2
DATE,"Anvar, ""the elder""",4,red blue,38.55,68.78,812.5,4.2,a.jpg,,uuid:one,uuid:one,,,1,1,,,{DEVICE},0,1
'''
ROOT_DELETED_FIELDS = f'''SubmissionDate,name,hh-size,hh-colours,loc-Latitude,loc-Longitude,loc-Altitude,loc-Accuracy,photo,new_q,meta-instanceID,old_q,{META}
DATE,Bahrom,,green,,,,,,new,uuid:two,,uuid:two,,,0,0,,,{DEVICE},0,2
DATE,"Anvar, ""the elder""",4,red blue,38.55,68.78,812.5,4.2,a.jpg,,uuid:one,"multi
line",uuid:one,,,1,1,,,{DEVICE},0,1
'''
ROOT_SPLIT_NO_GROUPS = f'''SubmissionDate,name,size,colours,colours/blue,colours/green,colours/red,loc-Latitude,loc-Longitude,loc-Altitude,loc-Accuracy,photo,new_q,instanceID,{META}
DATE,Bahrom,,green,0,1,0,,,,,,new,uuid:two,uuid:two,,,0,0,,,{DEVICE},0,2
DATE,"Anvar, ""the elder""",4,red blue,1,0,1,38.55,68.78,812.5,4.2,a.jpg,,uuid:one,uuid:one,,,1,1,,,{DEVICE},0,1
'''
PERSON = """pname,details-age,PARENT_KEY,KEY
Bahrom,7,uuid:two,uuid:two/person[1]
Anvar,40,uuid:one,uuid:one/person[1]
Zarina,35,uuid:one,uuid:one/person[2]
"""
PHONE = """number,PARENT_KEY,KEY
333,uuid:two/person[1],uuid:two/person[1]/details/phone[1]
111,uuid:one/person[1],uuid:one/person[1]/details/phone[1]
222,uuid:one/person[1],uuid:one/person[1]/details/phone[2]
"""
_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z,", re.MULTILINE)


@pytest.fixture(scope="module")
def layout(live_server: Any) -> Iterator[tuple[Any, int, WebUser]]:
    db, app = live_server.database, live_server.app
    project_id = make_project(db, "csv-layout")
    publish_form(db, app, project_id, V1.encode(), "layout.md")
    submit(db, app, project_id, SUB1, {"a.jpg": b"photo-a"}, device_id=DEVICE)
    publish_form(db, app, project_id, V2.encode(), "layout.md")
    submit(db, app, project_id, SUB2, device_id=DEVICE)
    admin = web_user(live_server, "csv-admin@example.tj", "admin", project_id)
    yield live_server, project_id, admin


def _get(layout: tuple[Any, int, WebUser], suffix: str) -> requests.Response:
    live, project_id, admin = layout
    reply = requests.get(
        f"{live.url}/v1/projects/{project_id}/forms/layout/{suffix}", headers=admin.headers, timeout=60
    )
    assert reply.status_code == 200, reply.text
    return reply


def _files(reply: requests.Response) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    assert archive.testzip() is None
    return {name: archive.read(name) for name in archive.namelist()}


def _text(data: bytes) -> str:
    text = data.decode("utf-8")
    assert _DATE.search(text) or text.count("\n") == 1, text
    return _DATE.sub("DATE,", text)


def test_default_layout_is_centrals(layout: tuple[Any, int, WebUser]) -> None:
    reply = _get(layout, "submissions.csv.zip")
    assert reply.headers["Content-Type"] == "application/zip"
    assert 'filename="layout.zip"' in reply.headers["Content-Disposition"]
    files = _files(reply)
    assert list(files) == ["layout.csv", "layout-person.csv", "layout-phone.csv", "media/a.jpg"]
    assert _text(files["layout.csv"]) == ROOT
    assert files["layout-person.csv"].decode() == PERSON
    assert files["layout-phone.csv"].decode() == PHONE
    assert files["media/a.jpg"] == b"photo-a"


def test_deleted_fields_bring_back_older_versions_fields(layout: tuple[Any, int, WebUser]) -> None:
    files = _files(_get(layout, "submissions.csv.zip?deletedFields=true"))
    assert _text(files["layout.csv"]) == ROOT_DELETED_FIELDS


def test_split_select_multiples_without_group_paths_or_media(layout: tuple[Any, int, WebUser]) -> None:
    reply = _get(layout, "submissions.csv.zip?attachments=false&splitSelectMultiples=true&groupPaths=false")
    assert 'filename="layout.csv.zip"' in reply.headers["Content-Disposition"]
    files = _files(reply)
    assert list(files) == ["layout.csv", "layout-person.csv", "layout-phone.csv"]
    assert _text(files["layout.csv"]) == ROOT_SPLIT_NO_GROUPS
    assert files["layout-person.csv"].decode() == PERSON.replace("details-age", "age")


def test_root_csv_alone(layout: tuple[Any, int, WebUser]) -> None:
    reply = _get(layout, "submissions.csv")
    assert reply.headers["Content-Type"].startswith("text/csv")
    assert 'filename="layout.csv"' in reply.headers["Content-Disposition"]
    assert _text(reply.content) == ROOT


def test_every_download_is_audited(layout: tuple[Any, int, WebUser]) -> None:
    live, project_id, _ = layout
    _get(layout, "submissions.csv.zip?groupPaths=false")
    with live.database.read() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "form.submission.export", AuditEvent.project_id == project_id)
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None and event.target_id == "layout" and event.actor_user_id is not None
        assert event.details["format"] == "csv.zip"
        assert event.details["options"]["group_paths"] is False
        assert event.details["access"] == {"level": "raw", "role": "admin"}


@pytest.mark.parametrize(
    ("suffix", "status"),
    [
        ("submissions.csv.zip?attachments=maybe", 400),
        ("submissions.csv.zip?%24filter=__system%2FreviewState%20eq%20null", 400),
        ("export.csv.zip?since=yesterday", 400),
        ("export.csv.zip?reviewState=great", 400),
        ("export.csv.zip?lang=fr", 400),
        ("export.geojson", 200),
    ],
)
def test_bad_parameters_get_a_clear_error(layout: tuple[Any, int, WebUser], suffix: str, status: int) -> None:
    live, project_id, admin = layout
    reply = requests.get(
        f"{live.url}/v1/projects/{project_id}/forms/layout/{suffix}", headers=admin.headers, timeout=60
    )
    assert reply.status_code == status, reply.text
    if status == 400:
        assert reply.json()["code"] == "400.1" and reply.json()["message"]


def test_unknown_form_and_no_credentials(layout: tuple[Any, int, WebUser]) -> None:
    live, project_id, admin = layout
    base = f"{live.url}/v1/projects/{project_id}/forms"
    assert (
        requests.get(f"{base}/nope/submissions.csv.zip", headers=admin.headers, timeout=30).status_code == 404
    )
    assert requests.get(f"{base}/layout/submissions.csv.zip", timeout=30).status_code == 401


def test_a_missing_file_does_not_spoil_the_export(live_server: Any) -> None:
    db, app = live_server.database, live_server.app
    project_id = make_project(db, "csv-missing-blob")
    publish_form(db, app, project_id, V1.encode(), "layout.md")
    submit(db, app, project_id, SUB1, {"a.jpg": b"photo-a, soon lost"}, device_id=DEVICE)
    db.blobs.path(hashlib.sha256(b"photo-a, soon lost").hexdigest()).unlink()
    admin = web_user(live_server, "csv-missing@example.tj", "admin", project_id)
    reply = requests.get(
        f"{live_server.url}/v1/projects/{project_id}/forms/layout/submissions.csv.zip",
        headers=admin.headers,
        timeout=60,
    )
    files = _files(reply)
    assert "media/a.jpg" not in files and files["layout-person.csv"].decode() == PERSON.splitlines(
        keepends=True
    )[0] + "".join(PERSON.splitlines(keepends=True)[2:4])


@pytest.mark.parametrize(
    ("fmt", "content_type", "magic"),
    [
        ("csv.zip", "application/zip", b"PK"),
        ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b"PK"),
        ("jsonl", "application/x-ndjson; charset=utf-8", b'{"__id": "uuid:two"'),
        ("geojson", "application/geo+json; charset=utf-8", b'{"type":"FeatureCollection"'),
    ],
)
def test_sarhad_exports_over_http(
    layout: tuple[Any, int, WebUser], fmt: str, content_type: str, magic: bytes
) -> None:
    reply = _get(layout, f"export.{fmt}?labels=true&lang=en&labelHeaders=true")
    assert reply.headers["Content-Type"] == content_type
    assert f'filename="layout.{fmt}"' in reply.headers["Content-Disposition"]
    assert reply.content.startswith(magic)
