"""Form management and filling a form in the browser (ODK Web Forms), over real HTTP and in Chromium.

- Media for a draft: uploaded by name through the API's ``attach_to_draft`` (audited ``via: console``),
  a name the draft does not use refused; a new draft copied from the published version; discard.
- The preview page (any role) and the fill page (admins and coordinators only, as API submissions);
  the XForm and its CSV media served to the page; the vendored Web Forms files served gzipped, cached,
  and loaded by no other page.
- A filled form posted with the page's CSRF token goes through the one ingest path as the signed-in
  user; without the token it is refused.
- In Chromium: Web Forms renders the form (with a choice list read from its CSV), the coordinator fills
  it in and sends it, and finds it in the submissions table.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from server.config import settings as settings_of_app
from server.forms import publish, source_from_xlsform
from server.models import AuditEvent, Project, Submission, SubmissionVersion
from tests.conftest import ROOT, LiveServer
from tests.console_support import XLSX_TYPE, Browser, add_project, add_user
from tests.test_console_browser import _new_page, _shot, _sign_in, chromium  # noqa: F401

FORMS = ROOT / "forms"
PLACES_CSV = "name,label\nkhorog,Khorog\nrushan,Rushan\nishkoshim,Ishkoshim\n"


def focus_xlsform(version: str = "2026120501") -> bytes:
    """A short focus-group write-up whose place comes from a CSV file (form media)."""
    wb = Workbook()
    survey = wb.active
    survey.title = "survey"
    survey.append(["type", "name", "label", "required"])
    survey.append(["text", "facilitator", "Facilitator code", "yes"])
    survey.append(["select_one_from_file places.csv", "district", "District", "yes"])
    survey.append(["integer", "participants", "Participants", "yes"])
    survey.append(["text", "summary", "Summary of the discussion", ""])
    settings = wb.create_sheet("settings")
    settings.append(["form_id", "version", "form_title"])
    settings.append(["fg_note", version, "Focus group note"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _signed_in(live: LiveServer, role: str, project_id: int) -> Browser:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.tj"
    add_user(live.database, email, role, project_id)
    browser = Browser.open(live.url)
    assert browser.sign_in(email).status_code == 302
    return browser


def _upload(browser: Browser, project_id: int, xlsx: bytes) -> Any:
    files = {"xlsform": ("fg_note.xlsx", xlsx, XLSX_TYPE)}
    return browser.post(
        f"/projects/{project_id}/forms", {}, files=files, token_from=f"/projects/{project_id}"
    )


def _form_post(browser: Browser, project_id: int, action: str, **kwargs: Any) -> Any:
    page = f"/projects/{project_id}/forms/fg_note"
    return browser.post(f"{page}/{action}", {}, token_from=page, **kwargs)


@pytest.fixture(scope="module")
def published(live_server: LiveServer) -> tuple[int, Browser]:
    """A project with fg_note published (its CSV attached to the draft first) and its coordinator."""
    project_id = add_project(live_server.database, f"Fill {uuid.uuid4().hex[:4]}")
    coordinator = _signed_in(live_server, "coordinator", project_id)
    assert _upload(coordinator, project_id, focus_xlsform()).status_code == 200
    form_page = coordinator.get(f"/projects/{project_id}/forms/fg_note").text
    assert "places.csv" in form_page and 'id="draft-missing"' in form_page
    # A file the draft does not use is refused, naming the ones it does use.
    wrong = _form_post(
        coordinator, project_id, "draft/media", files={"media": ("other.csv", b"a,b\n", "text/csv")}
    )
    assert wrong.status_code == 400 and "places.csv" in wrong.text
    added = _form_post(
        coordinator, project_id, "draft/media", files={"media": ("places.csv", PLACES_CSV, "text/csv")}
    )
    assert added.status_code == 302, added.text
    form_page = coordinator.get(f"/projects/{project_id}/forms/fg_note").text
    assert 'id="draft-missing"' not in form_page
    # The draft can be previewed (its CSV served) before it is published.
    assert coordinator.get(f"/projects/{project_id}/forms/fg_note/preview?draft=1").status_code == 200
    media = coordinator.get(f"/projects/{project_id}/forms/fg_note/media/places.csv?draft=1")
    assert media.status_code == 200 and media.text == PLACES_CSV
    assert _form_post(coordinator, project_id, "publish").status_code == 302
    with live_server.database.read() as session:
        attach = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "form.attachment.update", AuditEvent.project_id == project_id
            )
        ).one()
        assert attach.details["via"] == "console" and attach.details["attached"] == ["places.csv"]
    return project_id, coordinator


def test_drafts_from_the_published_version_and_discard(
    live_server: LiveServer, published: tuple[int, Browser]
) -> None:
    project_id, coordinator = published
    assert _form_post(coordinator, project_id, "draft/new").status_code == 302
    page = coordinator.get(f"/projects/{project_id}/forms/fg_note").text
    assert 'id="draft-media"' in page and "places.csv" in page and 'id="draft-missing"' not in page
    assert _form_post(coordinator, project_id, "draft/discard").status_code == 302
    assert 'id="draft"' not in coordinator.get(f"/projects/{project_id}/forms/fg_note").text
    analyst = _signed_in(live_server, "analyst", project_id)
    assert _form_post(analyst, project_id, "draft/new").status_code == 403


def test_preview_fill_and_vendored_files_follow_the_api_roles(
    live_server: LiveServer, published: tuple[int, Browser]
) -> None:
    project_id, coordinator = published
    base = f"/projects/{project_id}/forms/fg_note"
    analyst = _signed_in(live_server, "analyst", project_id)
    preview = analyst.get(f"{base}/preview")
    assert preview.status_code == 200
    assert 'type="importmap"' in preview.text and "vendor/web-forms-0.22.0/index.js" in preview.text
    policy = preview.headers["Content-Security-Policy"]
    assert "'wasm-unsafe-eval'" in policy and "'unsafe-eval'" not in policy.replace("'wasm-unsafe-eval'", "")
    assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+'", policy)
    assert 'id="fill-link"' not in preview.text  # analysts do not submit
    assert analyst.get(f"{base}/fill").status_code == 403
    assert analyst.get(f"{base}/preview?draft=1").status_code == 403
    assert analyst.get(f"{base}/xform").text.startswith("<?xml")
    assert coordinator.get(f"{base}/fill").status_code == 200
    # Web Forms is loaded by the fill page only: the other pages stay light.
    for other in ("/", f"/projects/{project_id}", base, f"{base}/submissions"):
        assert "vendor/" not in coordinator.get(other).text
    vendored = coordinator.get("/assets/vendor/web-forms-0.22.0/index-DlGh9P5C.js")
    assert vendored.status_code == 200 and vendored.headers["Content-Encoding"] == "gzip"
    assert "immutable" in vendored.headers["Cache-Control"]
    assert vendored.headers["Content-Type"].startswith("text/javascript")
    assert coordinator.get("/assets/vendor/vendor.json").status_code == 404


def _instance(instance_id: str, version: str = "2026120501") -> bytes:
    return (
        f'<data id="fg_note" version="{version}"><facilitator>F-07</facilitator><district>rushan</district>'
        f"<participants>9</participants><summary>Street lights</summary>"
        f"<meta><instanceID>{instance_id}</instanceID></meta></data>"
    ).encode()


def test_a_filled_form_goes_through_ingest_as_the_signed_in_user(
    live_server: LiveServer, published: tuple[int, Browser]
) -> None:
    project_id, coordinator = published
    base = f"/projects/{project_id}/forms/fg_note"
    instance_id = f"uuid:{uuid.uuid4()}"
    files = {"xml_submission_file": ("submission.xml", _instance(instance_id), "text/xml")}
    forged = coordinator.http.post(live_server.url + f"{base}/fill", files=files, timeout=30)
    assert forged.status_code == 400 and "expired" in forged.text
    sent = coordinator.post(f"{base}/fill", {}, token_from=f"{base}/fill", files=files)
    assert sent.status_code == 201, sent.text
    assert sent.json()["url"].endswith(instance_id)
    again = coordinator.post(f"{base}/fill", {}, token_from=f"{base}/fill", files=files)
    assert again.status_code == 201  # a resend of the same bytes, as ingest decides
    other = {
        "xml_submission_file": ("submission.xml", _instance(instance_id).replace(b">9<", b">8<"), "text/xml")
    }
    clash = coordinator.post(f"{base}/fill", {}, token_from=f"{base}/fill", files=other)
    assert clash.status_code == 409 and json.loads(clash.text)["code"].startswith("409")
    with live_server.database.read() as session:
        sub = session.scalars(select(Submission).where(Submission.instance_id == instance_id)).one()
        version = session.get(SubmissionVersion, sub.current_version_id)
        assert version is not None and version.source == "api" and version.source_detail == "console"
        assert version.user_id is not None and version.app_user_id is None
    page = coordinator.get(f"{base}/submissions").text
    assert instance_id in page


def test_fill_a_form_in_the_browser_and_find_it(
    chromium: Any,  # noqa: F811
    live_server: LiveServer,
    published: tuple[int, Browser],
) -> None:
    project_id, _coordinator = published
    email = f"hub-{uuid.uuid4().hex[:6]}@example.tj"
    add_user(live_server.database, email, "coordinator", project_id)
    page = _new_page(chromium)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _sign_in(page, live_server.url, email)
    page.goto(f"{live_server.url}/projects/{project_id}/forms/fg_note")
    page.click("#new-draft")  # a draft from the published version: its media listed, present
    assert "places.csv" in page.locator("#draft-media").inner_text()
    _shot(page, "form-draft-media-en")
    page.click("#discard-draft")
    assert page.locator("#draft").count() == 0
    page.click("#fill-link")
    page.get_by_text("Facilitator code").wait_for()
    _shot(page, "fill-en")
    page.locator(".odk-form input").first.fill("F-12")
    page.get_by_text("Ishkoshim").click()  # a choice read from places.csv
    number = page.get_by_role("spinbutton").first
    number.click()
    number.press_sequentially("11")  # PrimeVue's number input reads keys, not a pasted value
    number.press("Tab")
    page.locator(".odk-form textarea, .odk-form input").last.fill("Lighting near the school")
    page.get_by_role("button", name="Send").click()
    try:
        page.locator("#sent-link").wait_for()
    except Exception:
        page.screenshot(path="/tmp/fill-fail.png", full_page=True)
        raise AssertionError(f"not sent: {page.locator('#fill-status').inner_text()!r} {errors}") from None
    _shot(page, "fill-sent-en")
    page.click("#sent-link")
    assert "Lighting near the school" in page.locator("main").inner_text()
    page.goto(f"{live_server.url}/projects/{project_id}/forms/fg_note/submissions")
    assert "F-12" in page.locator("#submissions").inner_text()
    # The mission's own focus-group form (groups, repeats, constraints, regions/districts/jamoats CSVs)
    # renders in the preview too.
    _publish_mission_form(live_server, project_id, "focus_group")
    page.goto(f"{live_server.url}/projects/{project_id}/forms/focus_group/preview")
    page.get_by_text("Facilitator's staff code").wait_for()
    _shot(page, "preview-focus-group-en")
    assert not [e for e in errors if "Content Security Policy" in e or "Uncaught" in e], errors
    page.context.close()


def _publish_mission_form(live: LiveServer, project_id: int, name: str) -> None:
    settings = settings_of_app(live.app)
    source = source_from_xlsform((FORMS / f"{name}.xlsx").read_bytes(), settings, filename=f"{name}.xlsx")
    media = {p.name: p.read_bytes() for p in FORMS.glob("*.csv")}
    with live.database.write() as w:
        outcome = publish(w, w.session.get(Project, project_id), source, media)
        assert not outcome.missing_media


def test_vendored_files_are_the_pinned_ones() -> None:
    """The files the fill page loads are byte for byte those whose sha256 vendor.json pins (checked by
    the refresh script, offline), with their licences beside them."""
    import subprocess
    import sys

    from server.console import fill

    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor-web-forms"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    manifest = json.loads((fill.VENDOR / "vendor.json").read_text())
    dirs = {p["dir"] for p in manifest["packages"]}
    assert {fill.WEB_FORMS.split("/")[1], fill.VUE.split("/")[1]} == dirs
    assert (fill.VENDOR / "web-forms-0.22.0" / "LICENSE.md").read_text().startswith("# Apache License")
    assert "MIT" in (fill.VENDOR / "vue-3.5.29" / "LICENSE").read_text()
