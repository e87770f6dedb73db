"""The console's administration over real HTTP: users and roles (create, roles per project, password
reset, lifting a sign-in lock), the audit log page, the locked sign-in page, and a submission's history
of versions and audit trail. Each action is checked in the database and in the audit log."""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from sqlalchemy import select

from server import audit, signin_limits
from server.models import AuditEvent, ProjectRole, User
from server.signin_limits import MAX_FAILURES
from tests.conftest import LiveServer
from tests.console_support import (
    PASSWORD,
    XLSX_TYPE,
    Browser,
    add_project,
    add_user,
    collect_submit,
    safety_xlsform,
)

NEW_PASSWORD = "a brand new passphrase"


def _email(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}@example.tj"


def _signed_in(live: LiveServer, role: str, project_id: int | None) -> tuple[Browser, str]:
    email = _email(role)
    add_user(live.database, email, role, project_id)
    browser = Browser.open(live.url)
    assert browser.sign_in(email).status_code == 302
    return browser, email


def _unlock_address(live: LiveServer) -> None:
    """Failed sign-ins from 127.0.0.1 also count against the address every test signs in from."""
    with live.database.write() as w:
        signin_limits.unlock(w.session, address="127.0.0.1")


def _user(live: LiveServer, email: str) -> User:
    with live.database.read() as session:
        found = session.scalar(select(User).where(User.email == email))
        assert found is not None
        session.expunge(found)
        return found


def _events(live: LiveServer, action: str, target_id: str) -> list[AuditEvent]:
    with live.database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == action, AuditEvent.target_id == target_id)
                .order_by(AuditEvent.id)
            )
        )


@pytest.fixture(scope="module")
def admin(live_server: LiveServer) -> Browser:
    browser, _ = _signed_in(live_server, "admin", None)
    return browser


def test_only_site_admins_reach_users_and_audit(live_server: LiveServer, admin: Browser) -> None:
    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    coordinator, _ = _signed_in(live_server, "coordinator", project_id)
    for path in ("/users", "/audit", "/users/1"):
        assert coordinator.get(path).status_code == 403
        assert Browser.open(live_server.url).get(path).status_code == 302  # to the sign-in page
    assert "/users" not in coordinator.get("/").text
    home = admin.get("/").text
    assert 'href="/users"' in home and 'href="/audit"' in home


def test_create_a_user_give_and_take_roles_reset_password(live_server: LiveServer, admin: Browser) -> None:
    khorog = add_project(live_server.database, f"Khorog-{uuid.uuid4().hex[:6]}")
    rushan = add_project(live_server.database, f"Rushan-{uuid.uuid4().hex[:6]}")
    email = _email("new")
    form = {
        "email": email,
        "name": "Нигина",
        "language": "tg",
        "password": PASSWORD,
        "project": str(khorog),
        "role": "analyst",
    }
    forged = admin.http.post(f"{live_server.url}/users", data=form, allow_redirects=False)
    assert forged.status_code == 400  # no CSRF token
    made = admin.post("/users", form, token_from="/users")
    assert made.status_code == 302 and "done=created" in made.headers["Location"]
    user = _user(live_server, email)
    assert (user.display_name, user.language, user.is_site_admin) == ("Нигина", "tg", False)
    assert email in admin.get("/users").text
    again = admin.post("/users", {**form, "name": "Other"}, token_from="/users")
    assert again.status_code == 409 and 'id="new-user-error"' in again.text and 'value="Other"' in again.text
    assert PASSWORD not in again.text

    page = f"/users/{user.id}"
    saved = admin.post(
        f"{page}/roles", {f"role-{khorog}": "", f"role-{rushan}": "coordinator"}, token_from=page
    )
    assert saved.status_code == 302
    with live_server.database.read() as session:
        held = {
            r.project_id: r.role
            for r in session.scalars(select(ProjectRole).where(ProjectRole.user_id == user.id))
        }
    assert held == {rushan: "coordinator"}
    assert "selected>Coordinator" in admin.get(page).text.replace("\n", "")

    # the user signs in, then the administrator resets the password: the old session ends
    person = Browser.open(live_server.url)
    assert person.sign_in(email).status_code == 302
    assert person.get(f"/projects/{rushan}").status_code == 200
    short = admin.post(f"{page}/password", {"password": "short"}, token_from=page)
    assert short.status_code == 400
    reset = admin.post(f"{page}/password", {"password": NEW_PASSWORD}, token_from=page)
    assert reset.status_code == 302
    assert person.get(f"/projects/{rushan}").status_code == 302  # signed out
    assert Browser.open(live_server.url).sign_in(email, PASSWORD).status_code == 401
    assert Browser.open(live_server.url).sign_in(email, NEW_PASSWORD).status_code == 302

    target = str(user.id)
    assert [e.details["role"] for e in _events(live_server, "user.create", target)] == ["analyst"]
    assert [e.details["role"] for e in _events(live_server, "user.assignment.create", target)] == [
        "coordinator"
    ]
    assert [e.details["role"] for e in _events(live_server, "user.assignment.delete", target)] == ["analyst"]
    updates = _events(live_server, "user.update", target)
    assert len(updates) == 1 and updates[0].details == {"changed": ["password"]}
    assert all(e.actor_user_id is not None for e in _events(live_server, "user.create", target))
    _unlock_address(live_server)  # the wrong password above


def test_a_locked_sign_in_says_so_and_an_admin_lifts_it(live_server: LiveServer, admin: Browser) -> None:
    _unlock_address(live_server)
    email = _email("locked")
    add_user(live_server.database, email, "admin", None)
    person = Browser.open(live_server.url)
    for _ in range(MAX_FAILURES):
        assert person.sign_in(email, "wrong wrong wrong").status_code == 401
    locked = person.sign_in(email)  # even the right password waits
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 300
    assert "Too many failed sign-ins. Try again in 5 min." in locked.text
    assert "<form" in locked.text and "sign-in-error" in locked.text
    person.http.cookies.set("sarhad_lang", "tg")
    assert "Аз ҳад зиёд" in person.sign_in(email).text
    # the address is locked too: an administrator lifts it on the users page, keeping the account's lock
    freed = admin.post("/users/unlock-address", {"address": "127.0.0.1"}, token_from="/users")
    assert freed.status_code == 302
    assert _events(live_server, "user.session.unlock", "127.0.0.1")[-1].details["via"] == "console"

    user = _user(live_server, email)
    page = f"/users/{user.id}"
    assert (
        "Locked" in admin.get("/users").text
        and 'id="lock-state"><span class="tag closed"' in admin.get(page).text
    )
    lifted = admin.post(f"{page}/unlock", {}, token_from=page)
    assert lifted.status_code == 302 and "done=unlocked" in lifted.headers["Location"]
    assert person.sign_in(email).status_code == 302
    unlocks = _events(live_server, "user.session.unlock", email)
    assert unlocks[-1].details["via"] == "console" and unlocks[-1].actor_user_id is not None
    assert _events(live_server, "user.session.lock", email)


def test_audit_page_filters_and_pages(live_server: LiveServer, admin: Browser) -> None:
    marker = uuid.uuid4().hex[:8]
    with live_server.database.write() as w:
        for i in range(55):
            audit.record(w.session, f"test.page{marker}", target_type="test", target_id=str(i))
    first = admin.get("/audit", params={"action": f"test.page{marker}"})
    assert first.status_code == 200
    assert first.text.count(f"<code>test.page{marker}</code>") == 50
    assert 'id="next-page"' in first.text
    second = admin.get("/audit", params={"action": f"test.page{marker}", "page": "2"})
    assert second.text.count(f"<code>test.page{marker}</code>") == 5 and 'id="next-page"' not in second.text
    ids = re.findall(r"test <code>(\d+)</code>", first.text + second.text)
    assert ids == [str(i) for i in reversed(range(55))]

    users = admin.get("/audit", params={"action": "user"}).text
    assert "<code>user.session.create</code>" in users and f"test.page{marker}" not in users
    other, other_email = _signed_in(live_server, "admin", None)
    other_id = _user(live_server, other_email).id
    theirs = other.get("/audit", params={"actor": str(other_id)}).text
    assert re.findall(r"<code>([a-z_.]+)</code></td>", theirs) == ["user.session.create"]
    assert "No events match." in admin.get("/audit", params={"from": "2999-01-01"}).text
    assert admin.get("/audit", params={"to": "not a date"}).status_code == 400


def _publish_safety(browser: Browser, project_id: int) -> None:
    files = {"xlsform": ("safety.xlsx", safety_xlsform(), XLSX_TYPE)}
    uploaded = browser.post(
        f"/projects/{project_id}/forms", {}, files=files, token_from=f"/projects/{project_id}"
    )
    assert uploaded.status_code == 200, uploaded.text
    published = browser.post(
        f"/projects/{project_id}/forms/safety/publish", {}, token_from=f"/projects/{project_id}/forms/safety"
    )
    assert published.status_code == 302


def submission_with_an_edit(live: LiveServer, browser: Browser, project_id: int, email: str) -> str:
    """A submission from a Collect-like device, then an edit through the API (new age, new name)."""
    _publish_safety(browser, project_id)
    page = browser.post(
        f"/projects/{project_id}/devices", {"name": "Tablet A"}, token_from=f"/projects/{project_id}/devices"
    )
    token_url = re.search(r'<code class="url">([^<]+)</code>', page.text).group(1)  # type: ignore[union-attr]
    sent = collect_submit(token_url, "safety")
    xml = sent.xml.decode()
    edited_id = f"uuid:{uuid.uuid4()}"
    xml = re.sub(r"<age>[^<]*</age>", "<age>77</age>", xml)
    xml = re.sub(
        r"<respondent_name>[^<]*</respondent_name>", "<respondent_name>Edited Name</respondent_name>", xml
    )
    xml = xml.replace(
        f"<instanceID>{sent.instance_id}</instanceID>",
        f"<instanceID>{edited_id}</instanceID><deprecatedID>{sent.instance_id}</deprecatedID>",
    )
    token = requests.post(
        f"{live.url}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=10
    ).json()["token"]
    put = requests.put(
        f"{live.url}/v1/projects/{project_id}/forms/safety/submissions/{sent.instance_id}",
        data=xml.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
        timeout=30,
    )
    assert put.status_code == 200, put.text
    return sent.instance_id


def test_submission_history_and_audit_trail(live_server: LiveServer, admin: Browser) -> None:
    project_id = add_project(live_server.database, f"History-{uuid.uuid4().hex[:6]}")
    coordinator, email = _signed_in(live_server, "coordinator", project_id)
    instance_id = submission_with_an_edit(live_server, coordinator, project_id, email)
    path = f"/projects/{project_id}/forms/safety/submissions/{instance_id}"
    reviewed = coordinator.post(f"{path}/review", {"review_state": "approved"}, token_from=path)
    assert reviewed.status_code == 302

    page = coordinator.get(path).text
    history = page[page.index('id="history"') : page.index('id="trail"')]
    assert "Version 1" in history and "Version 2" in history and "As first received." in history
    version2 = history[history.index('id="version-2"') :]
    assert re.search(r"<th scope=\"row\">Age</th><td><del>\d+</del></td><td><ins>77</ins></td>", version2)
    trail = page[page.index('id="trail"') :]
    assert "<code>submission.update.version</code>" in trail
    assert "<code>submission.review</code>" in trail and "&#34;after&#34;" not in trail  # pseudonymised role
    shown = admin.get(path).text
    assert (
        "&#34;after&#34;: &#34;approved&#34;" in shown[shown.index('id="trail"') :]
    )  # a site admin sees details

    # an analyst sees the personal answer's change as pseudonyms, and no details in the trail
    analyst = Browser.open(live_server.url)
    analyst_email = _email("analyst")
    add_user(live_server.database, analyst_email, "analyst", project_id)
    assert analyst.sign_in(analyst_email).status_code == 302
    seen = analyst.get(path).text
    assert "Edited Name" not in seen and "Respondent" in seen[seen.index('id="history"') :]
    assert "&#34;after&#34;" not in seen[seen.index('id="trail"') :]

    # in Tajik, the labels come from the form
    coordinator.http.cookies.set("sarhad_lang", "tg")
    with live_server.database.write() as w:
        w.session.execute(User.__table__.update().where(User.email == email).values(language="tg"))
    assert "Синну сол" in coordinator.get(path).text
