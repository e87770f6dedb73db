"""``/v1/roles`` and role assignments in Central's shape, over real HTTP.

App users are assigned to forms with role 2 (``app-user``), as pyodk's ``create_app_users`` does, and
the assignment narrows what the device lists and may send; web users get project roles
(manager/coordinator/viewer) that decide what they may do next.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import requests

from server.projects import create_project
from server.users import create_user
from tests.collect_emulator import CollectEmulator
from tests.conftest import LiveServer
from tests.openrosa_setup import key_url, publish_xform, small_xform

PASSWORD = "a long enough password"


@dataclass
class Setup:
    url: str
    project: int
    manager: dict[str, str]
    coordinator: dict[str, str]
    analyst: dict[str, str]
    user_ids: dict[str, int]

    def v1(self, path: str) -> str:
        return f"{self.url}/v1{path}"

    def p(self, path: str = "") -> str:
        return self.v1(f"/projects/{self.project}{path}")


def _signed_in(url: str, email: str) -> dict[str, str]:
    r = requests.post(f"{url}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=10)
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(scope="module")
def setup(live_server: LiveServer) -> Setup:
    ids = {}
    with live_server.database.write() as w:
        project = create_project(w.session, "Roles")
        for name, role in [("manager", "admin"), ("coordinator", "coordinator"), ("analyst", "analyst")]:
            ids[name] = create_user(w.session, f"{name}@roles.example.org", PASSWORD, role, project).id
        # Users of another project, to be given roles here.
        other = create_project(w.session, "Roles other")
        ids["newcomer"] = create_user(w.session, "newcomer@roles.example.org", PASSWORD, "analyst", other).id
    for form_id in ("first", "second"):
        publish_xform(live_server.app, project.id, small_xform(form_id))
    url = live_server.url
    return Setup(
        url,
        project.id,
        _signed_in(url, "manager@roles.example.org"),
        _signed_in(url, "coordinator@roles.example.org"),
        _signed_in(url, "analyst@roles.example.org"),
        ids,
    )


def test_roles_list_and_lookup_by_id_or_system_name(setup: Setup) -> None:
    roles = requests.get(setup.v1("/roles"), timeout=10).json()  # open to anyone, as in Central
    assert [(r["id"], r["system"]) for r in roles] == [
        (1, "admin"),
        (2, "app-user"),
        (3, "manager"),
        (4, "viewer"),
        (8, "coordinator"),
    ]
    assert set(roles[0]) == {"id", "name", "system", "verbs", "createdAt", "updatedAt"}
    admin = requests.get(setup.v1("/roles/admin"), timeout=10).json()
    assert admin["name"] == "Administrator" and len(admin["verbs"]) > 10
    assert requests.get(setup.v1("/roles/2"), timeout=10).json()["system"] == "app-user"
    assert requests.get(setup.v1("/roles/aoeu"), timeout=10).status_code == 404
    assert requests.get(setup.v1("/roles/999"), timeout=10).status_code == 404


def test_app_users_assigned_to_forms_as_pyodk_does(setup: Setup) -> None:
    made = requests.post(
        setup.p("/app-users"), json={"displayName": "pyodk tablet"}, headers=setup.coordinator, timeout=10
    ).json()
    device, token = made["id"], made["token"]
    collect = CollectEmulator(key_url(setup.url, token, setup.project))
    assert sorted(f.form_id for f in collect.form_list()) == ["first", "second"]

    assign = setup.p(f"/forms/second/assignments/2/{device}")
    assert requests.post(assign, headers=setup.coordinator, timeout=10).json() == {"success": True}
    again = requests.post(assign, headers=setup.coordinator, timeout=10)
    assert again.status_code == 409 and again.json()["code"] == "409.3"
    assert [f.form_id for f in collect.form_list()] == ["second"]

    pairs = requests.get(setup.p("/forms/second/assignments"), headers=setup.coordinator, timeout=10).json()
    assert pairs == [{"actorId": device, "roleId": 2}]
    extended = requests.get(
        setup.p("/forms/second/assignments"),
        headers={**setup.coordinator, "X-Extended-Metadata": "true"},
        timeout=10,
    ).json()
    assert extended[0]["roleId"] == 2 and extended[0]["actor"]["displayName"] == "pyodk tablet"
    by_name = setup.p("/forms/second/assignments/app-user")
    actors = requests.get(by_name, headers=setup.coordinator, timeout=10).json()
    assert [(a["id"], a["type"], a["token"]) for a in actors] == [(device, "field_key", None)]
    assert requests.get(setup.p("/forms/second/assignments/manager"), headers=setup.coordinator).json() == []
    summary = requests.get(setup.p("/assignments/forms"), headers=setup.coordinator, timeout=10).json()
    assert summary == [{"actorId": device, "xmlFormId": "second", "roleId": 2}]
    assert requests.get(setup.p("/assignments/forms/viewer"), headers=setup.coordinator).json() == []

    # Only app users go on forms; analysts may not assign; unknown actors are 404.
    wrong_role = requests.post(
        setup.p(f"/forms/second/assignments/manager/{device}"), headers=setup.coordinator
    )
    assert wrong_role.status_code == 400
    assert (
        requests.post(setup.p("/forms/first/assignments/2/" + str(device)), headers=setup.analyst).status_code
        == 403
    )
    assert (
        requests.post(setup.p("/forms/first/assignments/2/999999"), headers=setup.coordinator).status_code
        == 404
    )

    assert requests.delete(assign, headers=setup.coordinator, timeout=10).json() == {"success": True}
    assert requests.delete(assign, headers=setup.coordinator, timeout=10).status_code == 404
    assert sorted(f.form_id for f in collect.form_list()) == ["first", "second"]


def test_project_roles_of_web_users(setup: Setup) -> None:
    listed = requests.get(setup.p("/assignments"), headers=setup.manager, timeout=10).json()
    ids = setup.user_ids
    assert listed == [
        {"actorId": ids["manager"], "roleId": 3},
        {"actorId": ids["coordinator"], "roleId": 8},
        {"actorId": ids["analyst"], "roleId": 4},
    ]
    viewers = requests.get(setup.p("/assignments/viewer"), headers=setup.manager, timeout=10).json()
    assert [(v["id"], v["type"]) for v in viewers] == [(ids["analyst"], "user")]

    newcomer = setup.p(f"/assignments/viewer/{ids['newcomer']}")
    # A coordinator may not hand out roles; the project's admin (Central's manager) may.
    assert requests.post(newcomer, headers=setup.coordinator, timeout=10).status_code == 403
    assert requests.post(newcomer, headers=setup.manager, timeout=10).json() == {"success": True}
    duplicate = requests.post(newcomer, headers=setup.manager, timeout=10)
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "409.3"
    second_role = requests.post(setup.p(f"/assignments/3/{ids['newcomer']}"), headers=setup.manager)
    assert second_role.status_code == 409 and "revoke" in second_role.json()["message"]

    # The role takes effect at once: the newcomer now reads this project's forms.
    newcomer_auth = _signed_in(setup.url, "newcomer@roles.example.org")
    assert requests.get(setup.p("/forms"), headers=newcomer_auth, timeout=10).status_code == 200
    assert requests.post(setup.p("/assignments/app-user/1"), headers=setup.manager).status_code == 400
    assert requests.post(setup.p("/assignments/viewer/999999"), headers=setup.manager).status_code == 404

    assert (
        requests.delete(setup.p(f"/assignments/3/{ids['newcomer']}"), headers=setup.manager).status_code
        == 404
    )
    assert requests.delete(newcomer, headers=setup.manager, timeout=10).json() == {"success": True}
    assert requests.get(setup.p("/forms"), headers=newcomer_auth, timeout=10).status_code == 403
