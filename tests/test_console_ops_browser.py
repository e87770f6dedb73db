"""Conflicts and downloads in a real browser (Debian's Chromium via Playwright): a coordinator resolves a
conflict by taking the payload as a new version, then prepares an XLSX and a CSV zip export, waits on the
job page (its script reloads it when the file is ready), downloads them and opens them. Screenshots go to
``var/screenshots/`` and are checked not to be blank. Skips like tests/test_console_browser.py."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from tests.conftest import LiveServer
from tests.console_support import add_project, add_user
from tests.test_console_browser import _new_page, _shot, _sign_in, _switch, chromium  # noqa: F401
from tests.test_console_ops import put, safety_xml
from tests.test_console_pages import _publish_safety, _signed_in
from tests.test_sync_support import new_id


def test_resolve_a_conflict_then_download_and_open_exports(
    chromium: Any,  # noqa: F811
    live_server: LiveServer,
    tmp_path: Path,
) -> None:
    project_id = add_project(live_server.database, f"Bokhtar-{uuid.uuid4().hex[:6]}")
    admin, _ = _signed_in(live_server, "admin", project_id)
    _publish_safety(admin, project_id)
    same = new_id()
    put(live_server, project_id, safety_xml(same, 30))
    for n in range(5):
        put(live_server, project_id, safety_xml(new_id(), 40 + n))
    assert put(live_server, project_id, safety_xml(same, 31), {"note.txt": b"typed again"}) == "conflict"
    email = f"coordinator-{uuid.uuid4().hex[:8]}@example.tj"
    add_user(live_server.database, email, "admin", project_id)

    page = _new_page(chromium)
    _sign_in(page, live_server.url, email)
    page.goto(f"{live_server.url}/projects/{project_id}")
    page.click("text=Conflicts")
    _switch(page, "tg")
    _shot(page, "conflicts-tg")
    page.click(f"a[href$='/conflicts/{_conflict_id(live_server, same)}']")
    assert page.locator("td.differs").first.inner_text().startswith("31")
    _shot(page, "conflict-tg")
    _switch(page, "en")
    page.check("input[value='new-version']")
    page.fill("#note", "age corrected on the second visit")
    page.click("text=Record the decision")
    page.wait_for_load_state()
    assert "Taken as a new version" in page.locator("#decision").inner_text()
    _shot(page, "conflict-decided-en")

    page.goto(f"{live_server.url}/hubs")
    _shot(page, "hubs-en")
    page.goto(f"{live_server.url}/projects/{project_id}/downloads")
    _shot(page, "downloads-en")
    for fmt, name in (("xlsx", "safety.xlsx"), ("csv.zip", "safety.csv.zip")):
        page.goto(f"{live_server.url}/projects/{project_id}/downloads")
        page.select_option("#export-format", fmt)
        page.select_option("#export-lang", "tg")
        page.check("input[name=labels]")
        page.click("text=Prepare the export")
        link = page.wait_for_selector("#job-file", timeout=30_000)
        assert link is not None
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert download.suggested_filename == name
        path = tmp_path / name
        download.save_as(path)
        if fmt == "xlsx":
            _shot(page, "job-ready-en")
            rows = list(load_workbook(path, read_only=True).worksheets[0].iter_rows(values_only=True))
            assert len(rows) == 7  # a header and six submissions
            assert any(cell == "Хоруғ" for row in rows for cell in row)  # choice labels in Tajik
            assert any(cell == 31 or cell == "31" for row in rows for cell in row)  # the version taken
        else:
            with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as zf:
                text = zf.read("safety.csv").decode("utf-8-sig")
            assert "Хоруғ" in text and text.count("\n") >= 7


def _conflict_id(live: LiveServer, instance_id: str) -> int:
    from sqlalchemy import select

    from server.models import Conflict

    with live.database.read() as session:
        return int(session.scalars(select(Conflict.id).where(Conflict.instance_id == instance_id)).one())
