"""One declared table of who may do what (server/access.py): every route has an entry, the README shows
the table as it is, and a sample of it holds over real HTTP for each role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from flask import Flask

from server import access
from server.errors import Problem
from server.sync.hubs import create_hub
from tests.conftest import ROOT, LiveServer
from tests.console_support import PASSWORD, Browser, add_user
from tests.datasets_fixtures import web_user
from tests.openrosa_setup import make_device, make_project, publish_xform, small_xform

README = (ROOT / "README.md").read_text()


def test_every_route_has_an_entry(app: Flask) -> None:
    routes: dict[str, list[str]] = {}
    for rule in app.url_map.iter_rules():
        methods = ",".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})) or "HEAD"
        routes.setdefault(rule.endpoint, []).append(f"{methods} {rule.rule}")
    missing = sorted(set(routes) - set(access.ACCESS))
    choices = ", ".join(rule.name for rule in access.RULES)
    assert not missing, (
        f"{len(missing)} route(s) have no entry in ACCESS (server/access.py); nobody may call them "
        f"until they do. Add one line each, choosing the rule ({choices}):\n"
        + "\n".join(
            f'    "{endpoint}": PROJECT_READ,  # {"; ".join(routes[endpoint])}' for endpoint in missing
        )
    )
    stale = sorted(set(access.ACCESS) - set(routes))
    assert not stale, f"ACCESS in server/access.py names endpoints that no longer exist; remove: {stale}"


def test_a_route_without_an_entry_is_refused() -> None:
    with pytest.raises(Problem) as refused:
        access.check("api.some_new_route", {})
    assert refused.value.status == 403 and "api.some_new_route" in refused.value.message


def test_readme_shows_the_table_as_declared(app: Flask) -> None:
    assert access.markdown(app) in README, (
        "the README's table under 'Who may do what' differs from server/access.py: "
        "replace it with the output of `.venv/bin/python -m server.access`"
    )


@dataclass
class Actors:
    url: str
    project: int
    headers: dict[str, dict[str, str]]  # role → request headers
    device_url: str
    hub_token: str


@pytest.fixture(scope="module")
def actors(live_server: LiveServer) -> Iterator[Actors]:
    app, database = live_server.app, live_server.database
    project = make_project(database, "Access table")
    other = make_project(database, "Another project")
    publish_xform(app, project, small_xform(), {})
    _, token = make_device(app, project, "Tablet A")
    with app.app_context(), database.write() as w:
        from server.models import Project

        _, hub_token = create_hub(w.session, "Access hub", [w.session.get(Project, project)])
    users = {
        "site admin": web_user(live_server, "site@access.tj", "admin", None),
        "project admin": web_user(live_server, "padmin@access.tj", "admin", project),
        "coordinator": web_user(live_server, "coord@access.tj", "coordinator", project),
        "analyst": web_user(live_server, "analyst@access.tj", "analyst", project),
        "analyst elsewhere": web_user(live_server, "other@access.tj", "analyst", other),
    }
    headers = {role: user.headers for role, user in users.items()}
    headers["anonymous"] = {}
    headers["hub"] = {"Authorization": f"Bearer {hub_token}"}
    # A draft with its media, for the draft-attachments rule (a copy of the published version).
    base = f"{live_server.url}/v1/projects/{project}/forms/small"
    assert requests.post(f"{base}/draft", headers=headers["coordinator"], timeout=30).status_code == 200
    yield Actors(
        live_server.url, project, headers, f"{live_server.url}/v1/key/{token}/projects/{project}", hub_token
    )


# (method, path under /v1 with {p}, role → expected status)
SAMPLE = [
    ("GET", "/projects/{p}/forms", {"site admin": 200, "project admin": 200, "coordinator": 200,
                                    "analyst": 200, "analyst elsewhere": 403, "anonymous": 401, "hub": 401}),
    ("GET", "/projects/{p}/forms/small/draft/attachments", {"coordinator": 200, "project admin": 200,
                                                             "analyst": 403, "anonymous": 401}),
    ("GET", "/projects/{p}/app-users", {"coordinator": 200, "analyst": 403, "hub": 401}),
    ("GET", "/projects/{p}/assignments", {"project admin": 200, "analyst": 403}),
    ("POST", "/projects/{p}/assignments/viewer/999999", {"coordinator": 403}),
    ("GET", "/projects/{p}/forms/small/submissions.csv", {"analyst": 200, "analyst elsewhere": 403,
                                                           "anonymous": 401}),
    ("POST", "/projects", {"coordinator": 403, "analyst": 403, "anonymous": 401}),
    ("GET", "/users/current", {"analyst": 200, "anonymous": 401, "hub": 401}),
    ("GET", "/health", {"anonymous": 200}),
    ("GET", "/sync/hub", {"hub": 200, "site admin": 401, "anonymous": 401}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "expected"), SAMPLE, ids=[f"{m} {p}" for m, p, _ in SAMPLE])
def test_the_table_holds_over_http(actors: Actors, method: str, path: str, expected: dict[str, int]) -> None:
    url = f"{actors.url}/v1{path.format(p=actors.project)}"
    got = {
        role: requests.request(method, url, headers=actors.headers[role], json={}, timeout=30).status_code
        for role in expected
    }
    assert got == expected


def test_devices_and_the_console_follow_the_table(actors: Actors, live_server: LiveServer) -> None:
    assert requests.get(f"{actors.device_url}/formList", timeout=30).status_code == 200
    wrong = actors.device_url.replace("/v1/key/", "/v1/key/x")
    assert requests.get(f"{wrong}/formList", timeout=30).status_code in (401, 403)
    # The console: an analyst reads the project but not its devices; anonymous is sent to sign in.
    add_user(live_server.database, "console-analyst@access.tj", "analyst", actors.project)
    add_user(live_server.database, "console-coord@access.tj", "coordinator", actors.project)
    anonymous = Browser.open(actors.url)
    reply = anonymous.get(f"/projects/{actors.project}/devices")
    assert reply.status_code in (302, 303) and "/sign-in" in reply.headers["Location"]
    pages = {}
    for email in ("console-analyst@access.tj", "console-coord@access.tj"):
        browser = Browser.open(actors.url)
        assert browser.sign_in(email, PASSWORD).status_code in (302, 303)
        pages[email] = (
            browser.get(f"/projects/{actors.project}").status_code,
            browser.get(f"/projects/{actors.project}/devices").status_code,
        )
    assert pages == {"console-analyst@access.tj": (200, 403), "console-coord@access.tj": (200, 200)}


def test_readme_security_section_names_every_rule() -> None:
    section = README.split("## Security", 1)[1]
    assert all(re.search(rf"\*\*{rule.name}\*\*", section) for rule in access.RULES)
