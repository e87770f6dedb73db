"""Values no database column can hold, wherever a client can put them, are refused in the client's own
format, on SQLite and PostgreSQL alike, and nothing is stored: a NUL character (address, query, JSON;
PostgreSQL cannot store one) is a 400, an id beyond the database's integers a 404."""

from __future__ import annotations

import re

import requests
from sqlalchemy import func, select

from server.models import Project, Submission
from server.users import create_user
from tests.conftest import LiveServer
from tests.openrosa_setup import (
    key_url,
    make_device,
    make_project,
    new_uuid,
    publish_xform,
    small_instance,
    small_xform,
)

PASSWORD = "correct horse battery"


def _count(live: LiveServer, model: type) -> int:
    with live.database.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _openrosa_message(response: requests.Response) -> str:
    assert response.headers["Content-Type"].startswith("text/xml"), response.text
    found = re.search(r"<message[^>]*>([^<]*)</message>", response.text)
    assert found, response.text
    return found.group(1)


def test_a_nul_is_refused_by_openrosa_and_the_api(live_server: LiveServer) -> None:
    project_id = make_project(live_server.database)
    publish_xform(live_server.app, project_id, small_xform())
    _, token = make_device(live_server.app, project_id)
    url = key_url(live_server.url, token, project_id)
    before = _count(live_server, Submission)

    xml = small_instance(new_uuid(), photo=None)
    files = {"xml_submission_file": ("submission.xml", xml, "text/xml")}
    sent = requests.post(f"{url}/submission?deviceID=collect:ab%00cd", files=files, timeout=10)
    assert sent.status_code == 400 and "NUL" in _openrosa_message(sent)
    listed = requests.get(f"{url}/formList?formID=small%00", timeout=10)
    assert listed.status_code == 400 and "NUL" in _openrosa_message(listed)
    assert _count(live_server, Submission) == before
    assert (
        requests.post(f"{url}/submission?deviceID=collect:abcd", files=files, timeout=10).status_code == 201
    )

    with live_server.database.write() as w:
        create_user(w.session, "nul-admin@example.org", PASSWORD, "admin")
    signed_in = requests.post(
        f"{live_server.url}/v1/sessions",
        json={"email": "nul-admin@example.org", "password": PASSWORD},
        timeout=10,
    )
    admin = {"Authorization": f"Bearer {signed_in.json()['token']}"}
    form = requests.get(
        f"{live_server.url}/v1/projects/{project_id}/forms/small%00", headers=admin, timeout=10
    )
    assert form.status_code == 400 and form.json()["code"] == "400.1"
    projects = _count(live_server, Project)
    too_big = requests.get(f"{live_server.url}/v1/projects/{10**20}", headers=admin, timeout=10)
    assert too_big.status_code == 404  # beyond any database id: unknown, not an overflow
    made = requests.post(
        f"{live_server.url}/v1/projects", json={"name": "Vanj\u0000"}, headers=admin, timeout=10
    )
    assert made.status_code == 400 and "NUL" in made.json()["message"]
    assert _count(live_server, Project) == projects
