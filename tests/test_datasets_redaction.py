"""Personal data by role, through the real HTTP exports.

Admins get raw values; analysts get keyed pseudonyms for personal identifiers, nothing for personal free
text and personal photos, coarsened personal locations, and sensitive answers kept; coordinators get raw
values only where the project allows it. The same person gets the same pseudonym in two exports.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from server.datasets.redact import pseudonym
from server.models import AuditEvent, Project, ProjectRole
from tests.datasets_fixtures import WebUser, make_app_user, make_project, publish_form, submit, web_user

FORM = """
| settings |
| | form_id | version | namespaces |
| | people | 1 | sarhad="https://sarhad.tj/xforms" |
| survey |
| | type | name | label::English (en) | label::Russian (ru) | appearance | bind::sarhad:sensitivity |
| | text | name | Name | Имя | | personal |
| | text | story | What happened | Что случилось | multiline | personal |
| | select_one sex | sex | Sex | Пол | | sensitive |
| | integer | age | Age | Возраст | | |
| | geopoint | home | Home | Дом | | personal |
| | image | photo | Face | Лицо | | personal |
| | image | scene | Scene | Место | | |
| | begin_repeat | contact | Contact | Контакт | | |
| | text | phone | Phone | Телефон | | personal |
| | end_repeat | | | | | |
| choices |
| | list_name | name | label::English (en) | label::Russian (ru) |
| | sex | female | Female | Женский |
| | sex | male | Male | Мужской |
"""


def _instance(n: int, name: str) -> str:
    return (
        f'<data id="people" version="1"><name>{name}</name><story>He said {name} was there</story>'
        f"<sex>female</sex><age>3{n}</age><home>38.5612 68.7734 800 5</home><photo>face{n}.jpg</photo>"
        f"<scene>scene{n}.jpg</scene><contact><phone>90000000{n}</phone></contact>"
        f"<meta><instanceID>uuid:person-{n}</instanceID></meta></data>"
    )


@pytest.fixture(scope="module")
def people(live_server: Any) -> Iterator[dict[str, Any]]:
    db, app = live_server.database, live_server.app
    project_id = make_project(db, "redaction")
    closed_id = make_project(db, "redaction-open", coordinators_see_personal=True)
    for pid in (project_id, closed_id):
        publish_form(db, app, pid, FORM.encode(), "people.md")
        facilitator = make_app_user(db, pid, "Facilitator Nodira")
        trainee = make_app_user(db, pid, "Trainee", test=True)
        submit(db, app, pid, _instance(1, "Gulnora"), {"face1.jpg": b"FACE", "scene1.jpg": b"SCENE"},
               app_user_id=facilitator)  # fmt: skip
        submit(db, app, pid, _instance(2, "  gulnora  "), app_user_id=facilitator)
        submit(db, app, pid, _instance(3, "Test Person"), app_user_id=trainee)
    users = {
        "admin": web_user(live_server, "red-admin@example.tj", "admin", project_id),
        "analyst": web_user(live_server, "red-analyst@example.tj", "analyst", project_id),
        "coordinator": web_user(live_server, "red-coord@example.tj", "coordinator", project_id),
    }
    with db.write() as w:
        # The same coordinator also coordinates the project that lets coordinators see personal data.
        coordinator_id = w.session.scalar(
            select(ProjectRole.user_id).where(
                ProjectRole.project_id == project_id, ProjectRole.role == "coordinator"
            )
        )
        w.session.add(ProjectRole(user_id=coordinator_id, project_id=closed_id, role="coordinator"))
        key = bytes.fromhex(w.session.get(Project, project_id).pseudonym_key)  # type: ignore[union-attr]
    yield {"live": live_server, "project": project_id, "open_project": closed_id, "users": users, "key": key}


def _zip(people: dict[str, Any], who: str, path: str, project: str = "project") -> dict[str, bytes]:
    user: WebUser = people["users"][who]
    url = f"{people['live'].url}/v1/projects/{people[project]}/forms/people/{path}"
    reply = requests.get(url, headers=user.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    return {name: archive.read(name) for name in archive.namelist()}


def _rows(data: bytes) -> list[dict[str, str]]:
    """The rows of a CSV, oldest submission first (exports list the newest first, as Central)."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))[::-1]


def test_admin_gets_raw_values_and_every_file(people: dict[str, Any]) -> None:
    files = _zip(people, "admin", "submissions.csv.zip")
    rows = _rows(files["people.csv"])
    assert [r["name"] for r in rows] == ["Gulnora", "  gulnora  "]  # the test app user's row is left out
    newest_first = list(csv.DictReader(io.StringIO(files["people.csv"].decode("utf-8"))))
    assert [r["name"] for r in newest_first] == ["  gulnora  ", "Gulnora"]
    assert rows[0]["story"] == "He said Gulnora was there"
    assert rows[0]["home-Latitude"] == "38.5612" and rows[0]["home-Accuracy"] == "5"
    assert rows[0]["SubmitterName"] == "Facilitator Nodira"
    assert _rows(files["people-contact.csv"])[0]["phone"] == "900000001"
    assert {"media/face1.jpg", "media/scene1.jpg"} <= set(files)


def test_analyst_gets_pseudonyms_and_no_personal_text_photos_or_precise_places(
    people: dict[str, Any],
) -> None:
    files = _zip(people, "analyst", "submissions.csv.zip")
    rows = _rows(files["people.csv"])
    key = people["key"]
    # Same person, same pseudonym (whitespace and case do not matter), and it is the keyed HMAC.
    assert rows[0]["name"] == rows[1]["name"] == pseudonym(key, "Gulnora")
    assert rows[0]["name"].startswith("p_") and len(rows[0]["name"]) == 18
    assert rows[0]["story"] == "" and rows[0]["photo"] == ""
    assert (rows[0]["home-Latitude"], rows[0]["home-Longitude"]) == ("38.6", "68.8")
    assert rows[0]["home-Altitude"] == rows[0]["home-Accuracy"] == ""
    assert rows[0]["sex"] == "female" and rows[0]["age"] == "31"  # sensitive and plain answers stay
    assert rows[0]["scene"] == "scene1.jpg"
    assert rows[0]["SubmitterName"] == pseudonym(key, "Facilitator Nodira")
    assert _rows(files["people-contact.csv"])[0]["phone"] == pseudonym(key, "900000001")
    assert "media/scene1.jpg" in files and "media/face1.jpg" not in files
    everything = b"".join(files.values())
    for secret in (b"Gulnora", b"was there", b"38.5612", b"900000001", b"FACE", b"Nodira"):
        assert secret not in everything


def test_pseudonyms_are_stable_across_exports_and_formats(people: dict[str, Any]) -> None:
    first = _rows(_zip(people, "analyst", "submissions.csv.zip")["people.csv"])
    second = _rows(_zip(people, "analyst", "export.csv.zip?labels=true&lang=ru")["people.csv"])
    assert first[0]["name"] == second[0]["name"]
    assert second[0]["sex"] == "Женский"
    user: WebUser = people["users"]["analyst"]
    url = f"{people['live'].url}/v1/projects/{people['project']}/forms/people/export.jsonl"
    lines = [json.loads(x) for x in requests.get(url, headers=user.headers, timeout=60).text.splitlines()]
    assert lines[0]["name"] == first[0]["name"] and "story" not in lines[0]
    assert lines[0]["home"] == {"latitude": 38.6, "longitude": 68.8, "altitude": None, "accuracy": None}


def test_codebook_says_how_each_personal_field_was_treated(people: dict[str, Any]) -> None:
    codebook = {r["variable"]: r for r in _rows(_zip(people, "analyst", "export.csv.zip")["codebook.csv"])}
    assert codebook["name"]["personal_data"] == "personal"
    assert codebook["name"]["treatment"].startswith("replaced by a keyed pseudonym")
    assert codebook["story"]["treatment"].startswith("removed")
    assert codebook["home-Latitude"]["treatment"].startswith("rounded to 0.1 degree")
    assert codebook["sex"]["personal_data"] == "sensitive" and "aggregated" in codebook["sex"]["treatment"]
    assert (
        codebook["sex"]["question_ru"] == "Пол"
        and codebook["sex"]["choices_ru"] == "female=Женский; male=Мужской"
    )
    assert codebook["age"]["treatment"] == "as collected" and codebook["age"]["personal_data"] == ""


def test_coordinator_is_raw_only_where_the_project_allows(people: dict[str, Any]) -> None:
    closed = _rows(_zip(people, "coordinator", "submissions.csv.zip")["people.csv"])
    assert closed[0]["name"] == pseudonym(people["key"], "Gulnora")
    opened = _rows(_zip(people, "coordinator", "submissions.csv.zip", project="open_project")["people.csv"])
    assert opened[0]["name"] == "Gulnora" and opened[0]["story"] == "He said Gulnora was there"


def test_exports_are_audited_with_the_access_given(people: dict[str, Any]) -> None:
    _zip(people, "analyst", "export.csv.zip?since=2020-01-01&reviewState=received")
    with people["live"].database.read() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "form.submission.export", AuditEvent.project_id == people["project"])
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None and event.actor_user_id is not None
        assert event.details["access"] == {"level": "redacted", "role": "analyst"}
        assert event.details["filters"]["since"].startswith("2020-01-01T00:00:00")
        assert event.details["filters"]["review_states"] == ["received"]
        assert event.details["via"] == "api"


def test_no_role_in_the_project_means_no_data(people: dict[str, Any]) -> None:
    outsider = web_user(people["live"], "red-outsider@example.tj", "analyst", people["open_project"])
    url = f"{people['live'].url}/v1/projects/{people['project']}/forms/people/submissions.csv.zip"
    assert requests.get(url, headers=outsider.headers, timeout=30).status_code == 403
