"""Web users over real HTTP: sign-in, bearer tokens, roles, Basic only over HTTPS."""

import base64

import pytest
import requests

from server.projects import create_project
from server.users import create_user
from tests.conftest import LiveServer

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def projects(live_server: LiveServer) -> tuple[int, int]:
    """Two projects, a site admin and an analyst of the first project."""
    with live_server.database.write() as w:
        khorog = create_project(w.session, "Khorog web users")
        other = create_project(w.session, "Other web users")
        create_user(w.session, "root@example.org", PASSWORD, "admin")
        create_user(w.session, "Analyst@Example.org", PASSWORD, "analyst", khorog)
    return khorog.id, other.id


def _token(live: LiveServer, email: str) -> dict[str, str]:
    r = requests.post(f"{live.url}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_sessions_roles_and_projects(live_server: LiveServer, projects: tuple[int, int]) -> None:
    khorog, other = projects
    admin = _token(live_server, "root@example.org")
    analyst = _token(live_server, "analyst@example.org")  # e-mail matching ignores case

    me = requests.get(f"{live_server.url}/v1/users/current", headers=analyst, timeout=10).json()
    assert me["email"] == "analyst@example.org" and me["type"] == "user"

    seen = requests.get(f"{live_server.url}/v1/projects", headers=analyst, timeout=10).json()
    assert [p["id"] for p in seen] == [khorog]
    assert (
        requests.get(f"{live_server.url}/v1/projects/{other}", headers=analyst, timeout=10).status_code == 403
    )
    all_ids = {
        p["id"] for p in requests.get(f"{live_server.url}/v1/projects", headers=admin, timeout=10).json()
    }
    assert {khorog, other} <= all_ids

    made = requests.post(
        f"{live_server.url}/v1/projects", json={"name": "Dushanbe"}, headers=admin, timeout=10
    )
    assert made.status_code == 200 and made.json()["name"] == "Dushanbe"
    refused = requests.post(f"{live_server.url}/v1/projects", json={"name": "X"}, headers=analyst, timeout=10)
    assert refused.status_code == 403 and refused.json()["code"] == "403.1"
    dup = requests.post(
        f"{live_server.url}/v1/projects", json={"name": "Dushanbe"}, headers=admin, timeout=10
    )
    assert dup.status_code == 409


@pytest.mark.usefixtures("projects")
def test_bad_credentials_and_bodies_are_clear_errors(live_server: LiveServer) -> None:
    url = live_server.url
    wrong = requests.post(
        f"{url}/v1/sessions", json={"email": "root@example.org", "password": "nope"}, timeout=10
    )
    assert wrong.status_code == 401 and wrong.json()["code"] == "401.2"
    assert requests.post(f"{url}/v1/sessions", data="{not json", timeout=10).status_code == 400
    missing = requests.post(f"{url}/v1/sessions", json={"email": "root@example.org"}, timeout=10)
    assert missing.status_code == 400 and "password" in missing.json()["details"]["fields"]
    assert requests.get(f"{url}/v1/projects", timeout=10).status_code == 401
    expired = requests.get(f"{url}/v1/projects", headers={"Authorization": "Bearer made-up"}, timeout=10)
    assert expired.status_code == 401


@pytest.mark.usefixtures("projects")
def test_logout_ends_the_session(live_server: LiveServer) -> None:
    headers = _token(live_server, "root@example.org")
    token = headers["Authorization"].split()[1]
    assert requests.delete(f"{live_server.url}/v1/sessions/{token}", headers=headers, timeout=10).ok
    assert requests.get(f"{live_server.url}/v1/projects", headers=headers, timeout=10).status_code == 401


@pytest.mark.usefixtures("projects")
def test_basic_is_refused_over_plain_http(live_server: LiveServer) -> None:
    basic = base64.b64encode(f"root@example.org:{PASSWORD}".encode()).decode()
    r = requests.get(
        f"{live_server.url}/v1/projects", headers={"Authorization": f"Basic {basic}"}, timeout=10
    )
    assert r.status_code == 401 and "HTTPS" in r.json()["message"]
