"""Users and roles, the audit log and a submission's history in a real browser (Debian's Chromium via
Playwright): a site administrator creates a user with a role, gives a role in a second project, reads
the audit log, and opens a submission with two versions. Screenshots land in ``var/screenshots/`` and
are checked not to be blank. Skips, saying why, without Chromium (``SARHAD_REQUIRE_BROWSER=1`` fails)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from server.models import ProjectRole, User
from tests.conftest import LiveServer
from tests.console_support import PASSWORD, Browser, add_project, add_user
from tests.test_console_admin import submission_with_an_edit
from tests.test_console_browser import _new_page, _shot, _sign_in, _switch, chromium  # noqa: F401


def test_an_admin_creates_a_user_gives_a_role_and_reads_a_history(
    chromium: Any,  # noqa: F811
    live_server: LiveServer,
) -> None:
    tag = uuid.uuid4().hex[:6]
    khorog = add_project(live_server.database, f"Khorog {tag}")
    bokhtar = add_project(live_server.database, f"Bokhtar {tag}")
    admin_email = f"root-{tag}@example.tj"
    add_user(live_server.database, admin_email, "admin", None)
    page = _new_page(chromium)
    _sign_in(page, live_server.url, admin_email)

    page.click("text=Users and roles")
    email = f"analyst-{tag}@example.tj"
    page.fill("#new-email", email)
    page.fill("#new-name", "Фарзона")
    page.select_option("#new-language", "tg")
    page.fill("#new-password", PASSWORD)
    page.select_option("#new-project", str(khorog))
    page.select_option("#new-role", "analyst")
    page.click("text=Create user")
    page.wait_for_load_state()
    assert page.locator("#done").inner_text() == "The user was created."
    page.select_option(f"#role-{bokhtar}", "coordinator")
    page.click("text=Save roles")
    page.wait_for_load_state()
    assert page.locator(f"#role-{bokhtar}").input_value() == "coordinator"
    _shot(page, "users-user-en")
    with live_server.database.read() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        held = {
            r.project_id: r.role
            for r in session.scalars(select(ProjectRole).where(ProjectRole.user_id == user.id))
        }
    assert held == {khorog: "analyst", bokhtar: "coordinator"}

    page.click("text=Users and roles")
    assert email in page.locator("#users").inner_text()
    _switch(page, "tg")
    _shot(page, "users-tg")
    page.click("text=Дафтари аудит")
    page.select_option("#a-action", "user")
    page.click("form.filters button")
    page.wait_for_load_state()
    assert "user.assignment.create" in page.locator("#audit").inner_text()
    _shot(page, "audit-tg")

    helper = Browser.open(live_server.url)
    assert helper.sign_in(admin_email).status_code == 302
    instance_id = submission_with_an_edit(live_server, helper, khorog, admin_email)
    page.goto(f"{live_server.url}/projects/{khorog}/forms/safety/submissions/{instance_id}")
    history = page.locator("#version-2").inner_text()
    assert "Синну сол" in history and "77" in history  # the form's Tajik label of "Age"
    assert page.locator("#audit-trail").count() == 0 or page.locator("#audit-trail").is_visible()
    _shot(page, "submission-history-tg")
    page.context.close()
