"""Entity lists (Central's datasets) and their properties over real HTTP, in Central's JSON shape."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import select

from server.models import AuditEvent
from server.projects import create_project
from server.users import create_user
from tests.conftest import LiveServer

PASSWORD = "a long enough password"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass
class Lists:
    live: LiveServer
    url: str
    project: int
    coordinator: dict[str, str]
    analyst: dict[str, str]
    outsider: dict[str, str]


def _signed_in(url: str, email: str) -> dict[str, str]:
    r = requests.post(f"{url}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=10)
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(scope="module")
def lists(live_server: LiveServer) -> Lists:
    with live_server.database.write() as w:
        project = create_project(w.session, "Entity lists")
        other = create_project(w.session, "Entity lists other")
        create_user(w.session, "coord@lists.example.org", PASSWORD, "coordinator", project)
        create_user(w.session, "analyst@lists.example.org", PASSWORD, "analyst", project)
        create_user(w.session, "outsider@lists.example.org", PASSWORD, "coordinator", other)
    url = live_server.url
    return Lists(
        live_server,
        f"{url}/v1/projects/{project.id}/datasets",
        project.id,
        _signed_in(url, "coord@lists.example.org"),
        _signed_in(url, "analyst@lists.example.org"),
        _signed_in(url, "outsider@lists.example.org"),
    )


def test_create_get_and_add_properties_as_central(lists: Lists) -> None:
    made = requests.post(lists.url, json={"name": "concerns"}, headers=lists.coordinator, timeout=10)
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["name"] == "concerns" and body["projectId"] == lists.project
    assert body["approvalRequired"] is False and body["ownerOnly"] is False and ISO_Z.match(body["createdAt"])
    assert body["properties"] == [] and body["linkedForms"] == [] and body["sourceForms"] == []

    for name in ("district", "status", "reported.date"):
        added = requests.post(
            f"{lists.url}/concerns/properties", json={"name": name}, headers=lists.coordinator
        )
        assert added.json() == {"success": True}, added.text
    again = requests.post(
        f"{lists.url}/concerns/properties", json={"name": "status"}, headers=lists.coordinator
    )
    assert again.status_code == 409 and again.json()["code"] == "409.3"

    one = requests.get(f"{lists.url}/concerns", headers=lists.analyst, timeout=10).json()  # any role reads
    assert [(p["name"], p["odataName"], p["forms"]) for p in one["properties"]] == [
        ("district", "district", []),
        ("status", "status", []),
        ("reported.date", "reported_date", []),
    ]
    assert all(ISO_Z.match(p["publishedAt"]) for p in one["properties"]) and ISO_Z.match(one["lastUpdate"])
    assert set(one) >= {"draftLinkedForms", "draftSourceForms", "approvalRequired", "createdAt"}

    duplicate = requests.post(lists.url, json={"name": "concerns"}, headers=lists.coordinator, timeout=10)
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "409.3"

    approved = requests.post(
        lists.url, json={"name": "action_plans", "approvalRequired": True}, headers=lists.coordinator
    ).json()
    assert approved["approvalRequired"] is True
    listed = requests.get(lists.url, headers=lists.analyst, timeout=10).json()
    assert [(e["name"], e["approvalRequired"]) for e in listed] == [
        ("action_plans", True),
        ("concerns", False),
    ]
    assert set(listed[0]) == {"name", "createdAt", "projectId", "approvalRequired", "ownerOnly"}
    extended = requests.get(lists.url, headers={**lists.analyst, "X-Extended-Metadata": "true"}).json()
    assert (extended[1]["entities"], extended[1]["lastEntity"], extended[1]["conflicts"]) == (0, None, 0)

    with lists.live.database.read() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.project_id == lists.project).order_by(AuditEvent.id)
        ).all()
    assert actions.count("dataset.create") == 2 and actions.count("dataset.property.create") == 3


@pytest.mark.parametrize("name", ["__hidden", "has.dot", "1starts_with_digit", "", "with space", "x" * 256])
def test_invalid_list_names_are_400(lists: Lists, name: str) -> None:
    refused = requests.post(lists.url, json={"name": name}, headers=lists.coordinator, timeout=10)
    assert refused.status_code == 400, refused.text


def test_list_names_as_central_allows(lists: Lists) -> None:
    for name in ("Районы", ":colon_first", "_under-score1"):
        made = requests.post(lists.url, json={"name": name}, headers=lists.coordinator, timeout=10)
        assert made.status_code == 200, (name, made.text)
        assert requests.get(f"{lists.url}/{name}", headers=lists.coordinator).json()["name"] == name


def test_invalid_property_names_are_400(lists: Lists) -> None:
    requests.post(lists.url, json={"name": "props"}, headers=lists.coordinator, timeout=10)
    for name in ("name", "LABEL", "__x", "1a", ":a", "a b"):
        refused = requests.post(
            f"{lists.url}/props/properties", json={"name": name}, headers=lists.coordinator
        )
        assert refused.status_code == 400, (name, refused.text)
    missing = requests.post(f"{lists.url}/props/properties", json={}, headers=lists.coordinator)
    assert missing.status_code == 400


def test_roles(lists: Lists) -> None:
    refused = requests.post(lists.url, json={"name": "by_analyst"}, headers=lists.analyst, timeout=10)
    assert refused.status_code == 403
    requests.post(lists.url, json={"name": "guarded"}, headers=lists.coordinator, timeout=10)
    assert (
        requests.post(
            f"{lists.url}/guarded/properties", json={"name": "p"}, headers=lists.analyst
        ).status_code
        == 403
    )
    assert requests.get(lists.url, headers=lists.outsider, timeout=10).status_code == 403
    assert requests.get(f"{lists.url}/guarded", headers=lists.outsider, timeout=10).status_code == 403
    assert requests.get(lists.url, timeout=10).status_code == 401
    assert requests.get(f"{lists.url}/nothing_here", headers=lists.analyst, timeout=10).status_code == 404
