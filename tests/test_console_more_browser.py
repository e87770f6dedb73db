"""In a real browser (Debian's Chromium via Playwright): a coordinator creates a device that signs in
with a password and sees what Collect needs, opens a submission whose photo shows as a thumbnail, and
opens an entity in conflict and marks it resolved. Screenshots go to ``var/screenshots/`` and are
checked not to be blank; skipped, saying why, without Chromium (a failure with SARHAD_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path
from typing import Any

from tests.conftest import LiveServer
from tests.console_more_support import seed
from tests.console_support import add_user
from tests.test_console_browser import _decode_qr, _new_page, _shot, _sign_in, _switch, chromium  # noqa: F401


def test_digest_device_photo_thumbnail_and_an_entity(
    chromium: Any,  # noqa: F811
    live_server: LiveServer,
    tmp_path: Path,
) -> None:
    world = seed(live_server, tmp_path)
    email = f"coordinator-{uuidlib.uuid4().hex[:6]}@example.tj"
    add_user(live_server.database, email, "coordinator", world.project)
    base, p = live_server.url, world.project
    page = _new_page(chromium)
    _sign_in(page, base, email)

    page.goto(f"{base}/projects/{p}/devices")
    page.fill("#digest-name", "hub-tablet-2")
    page.fill("#digest-password", "long enough 2")
    page.fill("#digest-password-again", "long enough 2")
    page.click("#digest-form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#digest-username").inner_text() == "hub-tablet-2"
    assert f"/v1/projects/{p}" in page.locator("code.url").inner_text()
    # The code read off the page carries the address and the username, never a key or the password.
    general = _decode_qr(page, tmp_path)["general"]
    assert general == {"server_url": f"{base}/v1/projects/{p}", "username": "hub-tablet-2"}
    _shot(page, "device-password-en")

    instance_id = world.photo_submission()
    page.goto(f"{base}/projects/{p}/forms/photos/submissions/{instance_id}")
    thumb = page.locator("a.thumb img").first
    thumb.scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('a.thumb img')].every(i => i.complete)")
    assert thumb.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [240, 180]
    _shot(page, "submission-thumbnails-en")

    uuid = world.concern("Farkhor")
    world.visit(uuid, "resolved", 1, branch=str(uuidlib.uuid4()))
    world.visit(uuid, "open", 1, branch=str(uuidlib.uuid4()))
    page.goto(f"{base}/projects/{p}")
    page.click("#entity-lists-link")
    page.click("#entity-lists a:text-is('concerns')")
    page.click("#entities a:text-is('Farkhor concern')")
    page.wait_for_load_state()
    _switch(page, "tg")
    assert page.locator("#conflict").is_visible()
    assert page.locator("li[id^=version-]").count() == 3
    _shot(page, "entity-conflict-tg")
    page.click("#resolve")
    page.wait_for_load_state()
    assert page.locator("#resolved").is_visible() and page.locator("#conflict").count() == 0
    page.context.close()
