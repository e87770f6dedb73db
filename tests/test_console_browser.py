"""The console in a real browser (Debian's Chromium, driven by Playwright), walked as a coordinator
would: a wrong then right password, Tajik, an XLSForm with an error then the fixed one, publish, a
device whose QR code is read off the page with zbarimg, a submission from the Collect-like client,
found in the table in Tajik and reviewed, and an analyst who sees pseudonyms. Every page is saved as a
screenshot in each language (``var/screenshots/``) and checked not to be blank.

Skips, saying why, when Chromium, zbarimg or Playwright is missing; ``SARHAD_REQUIRE_BROWSER=1``
(.ci/run) makes that a failure.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.qr import decode_payload
from tests.conftest import ROOT, LiveServer
from tests.console_support import (
    PASSWORD,
    REQUIRE_BROWSER_ENV,
    add_project,
    add_user,
    browser_missing,
    collect_submit,
    launch_chromium,
    safety_xlsform,
)

SCREENSHOTS = ROOT / "var" / "screenshots"
LANGS = ("en", "tg", "ru")
MIN_COLOURS = 12  # a blank or unstyled page has a handful


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    reason = browser_missing()
    if reason:
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(f"{REQUIRE_BROWSER_ENV}=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


def _new_page(chromium: Any, width: int = 1366, height: int = 768) -> Any:
    context = chromium.new_context(viewport={"width": width, "height": height}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _colours(png: bytes) -> int:
    """Distinct colours of a screenshot (Chromium's PNG, read with the standard library)."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, colour_type = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _depth, colour_type = struct.unpack(">IIBB", data[:10])
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    channels = {2: 3, 6: 4}[colour_type]
    raw = zlib.decompress(idat)
    stride = width * channels
    seen: set[bytes] = set()
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, up_left = prev[i], (prev[i - channels] if i >= channels else 0)
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                line[i] = (line[i] + pred) & 0xFF
        if y % 4 == 0:  # every fourth row is plenty to tell a page from a blank one
            seen.update(bytes(line[i : i + 3]) for i in range(0, stride, channels * 2))
        prev = line
    return len(seen)


def _shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    png = page.screenshot(path=str(path), full_page=True)
    colours = _colours(png)
    assert colours > MIN_COLOURS, f"{name} looks blank ({colours} colours)"
    return path


def _switch(page: Any, lang: str) -> None:
    page.click(f"form.langs button[value={lang}]")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == lang


def _sign_in(page: Any, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/sign-in")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button.primary")
    page.wait_for_load_state()


def _decode_qr(page: Any, tmp_path: Path) -> dict[str, Any]:
    src = page.locator("img.qr").first.get_attribute("src")
    assert src and src.startswith("data:image/png;base64,")
    path = tmp_path / f"qr-{uuid.uuid4().hex[:6]}.png"
    path.write_bytes(base64.b64decode(src.split(",", 1)[1]))
    out = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(path)], capture_output=True, text=True, check=True
    )
    return decode_payload(out.stdout.strip())


def test_a_coordinator_walks_the_console(chromium: Any, live_server: LiveServer, tmp_path: Path) -> None:
    base = live_server.url
    project_id = add_project(live_server.database, f"Khorog {uuid.uuid4().hex[:4]}")
    coordinator = f"coord-{uuid.uuid4().hex[:6]}@example.tj"
    analyst = f"analyst-{uuid.uuid4().hex[:6]}@example.tj"
    add_user(live_server.database, coordinator, "admin", project_id)
    add_user(live_server.database, analyst, "analyst", project_id)
    bad_xlsx, good_xlsx = tmp_path / "safety-bad.xlsx", tmp_path / "safety.xlsx"
    bad_xlsx.write_bytes(safety_xlsform(broken=True))
    good_xlsx.write_bytes(safety_xlsform())
    page = _new_page(chromium)

    # Sign in: a wrong password first.
    _sign_in(page, base, coordinator, "not the password")
    assert page.locator("#sign-in-error").is_visible()
    _shot(page, "sign-in-error-en")
    for lang in LANGS:
        _switch(page, lang)
        _shot(page, f"sign-in-{lang}")
    _switch(page, "en")
    _sign_in(page, base, coordinator)
    assert page.locator("h1").inner_text() == "Your projects"

    # Tajik from here on, remembered on the user.
    _switch(page, "tg")
    assert page.locator("h1").inner_text() == "Лоиҳаҳои шумо"
    page.click(f"a[href='/projects/{project_id}']")
    page.set_input_files("#xlsform", str(bad_xlsx))
    page.click("#upload ~ form button.primary")
    error = page.locator("#upload-error")
    assert "List name not in choices sheet" in error.inner_text() and "survey" in error.inner_text()
    _shot(page, "upload-error-tg")
    page.set_input_files("#xlsform", str(good_xlsx))
    page.click("#upload ~ form button.primary")
    assert page.locator("#upload-ok").is_visible()
    page.click("a.button.primary")
    page.click("#publish")
    assert page.locator("#current-version").inner_text() == "2026120401"
    # Its state: closing (hidden from devices, still accepting), then open again.
    page.check("input[name=state][value=closing]")
    page.click("input[name=state] >> xpath=ancestor::form//button")
    assert page.locator("#form-state").inner_text() == "Дар ҳоли пӯшидан"
    page.check("input[name=state][value=open]")
    page.click("input[name=state] >> xpath=ancestor::form//button")
    assert page.locator("#form-state").inner_text() == "Кушода"

    # A device: its QR code, read off the page, holds what Collect needs.
    page.goto(f"{base}/projects/{project_id}/devices")
    page.fill("#device-name", "Планшет 1")
    page.click("#device-name ~ button")
    settings = _decode_qr(page, tmp_path)
    _shot(page, "device-code-tg")
    server_url = settings["general"]["server_url"]  # type: ignore[index]
    assert re.fullmatch(rf"{re.escape(base)}/v1/key/[A-Za-z0-9_-]{{40,}}/projects/{project_id}", server_url)
    assert settings["project"] == {"name": page.locator("nav.crumbs a").nth(1).inner_text()}  # type: ignore[index]

    # Collect sends a submission; it is in the table, in Tajik, and gets reviewed.
    instance = collect_submit(server_url, "safety")
    page.goto(f"{base}/projects/{project_id}/forms/safety/submissions")
    assert "Синну сол" in page.locator("#submissions thead").inner_text()
    page.click(f"a[href$='{instance.instance_id}']")
    page.select_option("#review-select", "approved")
    page.click("#review-select ~ button")
    assert page.locator("#review-state").inner_text() == "Тасдиқшуда"
    page.fill("#comment-body", "Бо фасилитатор санҷида шуд")
    page.click("#comment-body ~ button")
    assert "Бо фасилитатор санҷида шуд" in page.content()

    # The table filtered by the submission's district, with the columns this coordinator chose.
    district = re.search(rb"<district>([^<]*)</district>", instance.xml).group(1).decode()  # type: ignore[union-attr]
    page.goto(f"{base}/projects/{project_id}/forms/safety/submissions")
    page.select_option("#f-district", district)
    page.click(".filters .go button")
    assert page.locator(f"a[href$='{instance.instance_id}']").count() == 1
    page.click("#columns summary")
    page.uncheck("#columns input[value='/age']")
    page.click("#save-columns")
    assert "Синну сол" not in page.locator("#submissions thead").inner_text()
    assert page.locator("#f-district").input_value() == district  # the filter is kept
    _shot(page, "submissions-filtered-tg")
    page.click("#columns summary")
    page.click("#columns button[name=reset]")
    assert "Синну сол" in page.locator("#submissions thead").inner_text()

    # Every page in every language, at 1366x768; the submissions list on a 10-inch tablet too.
    pages = {
        "home": "/",
        "project": f"/projects/{project_id}",
        "form": f"/projects/{project_id}/forms/safety",
        "devices": f"/projects/{project_id}/devices",
        "submissions": f"/projects/{project_id}/forms/safety/submissions",
        "submission": f"/projects/{project_id}/forms/safety/submissions/{instance.instance_id}",
    }
    for lang in LANGS:
        _switch(page, lang)
        for name, path in pages.items():
            page.goto(base + path)
            assert page.locator("h1").count() == 1
            _shot(page, f"{name}-{lang}")
    page.goto(f"{base}/projects/{project_id}/devices")
    page.fill("#sheet-count", "6")
    page.click("#sheet-count ~ button")
    assert page.locator("img.qr").count() == 6
    _shot(page, "device-sheet-ru")
    tablet = _new_page(chromium, 800, 1280)
    _sign_in(tablet, base, coordinator)
    tablet.goto(base + pages["submissions"])
    _shot(tablet, "submissions-tablet-ru")
    tablet.context.close()

    # An analyst sees the respondent's name only as a pseudonym, as in exports.
    name = re.search(rb"<respondent_name>([^<]*)</respondent_name>", instance.xml).group(1).decode()  # type: ignore[union-attr]
    other = _new_page(chromium)
    _sign_in(other, base, analyst)
    other.goto(base + pages["submission"])
    text = other.locator("main").inner_text()
    assert name not in text and re.search(r"p_[0-9a-f]{16}", text)
    _shot(other, "submission-analyst-en")
    other.context.close()
    page.context.close()
