"""The console over real HTTP: sign-in and its cookie, CSRF, languages, roles, forms, devices,
submissions (keyset paging, filters, review, comments) and pseudonyms, against a live server."""

from __future__ import annotations

import gzip
import re
import uuid

import requests

from server.models import User, WebSession
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


def _email(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}@example.tj"


def _signed_in(live: LiveServer, role: str, project_id: int | None) -> tuple[Browser, str]:
    email = _email(role)
    add_user(live.database, email, role, project_id)
    browser = Browser.open(live.url)
    assert browser.sign_in(email).status_code == 302
    return browser, email


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


def _token_url(browser: Browser, project_id: int, name: str) -> str:
    page = browser.post(
        f"/projects/{project_id}/devices", {"name": name}, token_from=f"/projects/{project_id}/devices"
    )
    assert page.status_code == 200, page.text
    found = re.search(r'<code class="url">([^<]+)</code>', page.text)
    assert found and "/v1/key/" in found.group(1)
    return found.group(1)


# ---- sign-in, cookie, CSRF -------------------------------------------------------------------------


def test_sign_in_wrong_then_right_password_sets_a_strict_cookie(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    other = add_project(live_server.database, f"Other-{uuid.uuid4().hex[:6]}")
    email = _email("coordinator")
    add_user(live_server.database, email, "coordinator", project_id)
    browser = Browser.open(live_server.url)

    first = browser.get("/")
    assert first.status_code == 302 and first.headers["Location"].startswith("/sign-in")

    wrong = browser.sign_in(email, "not the password")
    assert wrong.status_code == 401
    assert "The e-mail address or password is wrong." in wrong.text
    assert "sarhad_session" not in wrong.headers.get("Set-Cookie", "")

    right = browser.sign_in(email)
    assert right.status_code == 302 and right.headers["Location"] == "/"
    cookie = right.headers["Set-Cookie"]
    assert "sarhad_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" in cookie and "Secure" not in cookie  # plain HTTP here; Secure over HTTPS

    home = browser.get("/")
    assert home.status_code == 200
    assert f"/projects/{project_id}" in home.text and f'/projects/{other}"' not in home.text


def test_secure_cookie_over_https_behind_a_trusted_proxy(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    app = env.app(trusted_proxies=1)
    database = app.extensions["sarhad.db"]
    email = _email("admin")
    add_user(database, email, "admin", None)
    client = app.test_client()
    headers = {"X-Forwarded-Proto": "https"}
    page = client.get("/sign-in", headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    answer = client.post(
        "/sign-in", data={"csrf_token": token, "email": email, "password": PASSWORD}, headers=headers
    )
    assert answer.status_code == 302
    assert "Secure" in answer.headers["Set-Cookie"]


def test_a_post_without_the_csrf_token_is_refused(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    browser, _ = _signed_in(live_server, "coordinator", project_id)
    forged = browser.http.post(
        f"{live_server.url}/projects/{project_id}/devices", data={"name": "forged"}, allow_redirects=False
    )
    assert forged.status_code == 400
    wrong = browser.http.post(
        f"{live_server.url}/projects/{project_id}/devices",
        data={"name": "forged", "csrf_token": "0" * 64},
        allow_redirects=False,
    )
    assert wrong.status_code == 400
    devices = browser.get(f"/projects/{project_id}/devices")
    assert "forged" not in devices.text
    # Signing in needs the token too (no login CSRF).
    anonymous = requests.post(
        f"{live_server.url}/sign-in", data={"email": "x@y.tj", "password": "p"}, timeout=30
    )
    assert anonymous.status_code == 400


def test_sign_out_ends_the_session_on_the_server(live_server: LiveServer) -> None:
    browser, email = _signed_in(live_server, "admin", None)
    stolen = browser.http.cookies.get("sarhad_session")
    assert browser.post("/sign-out", {}).status_code == 302
    with live_server.database.read() as session:
        user = session.query(User).filter_by(email=email).one()
        assert session.query(WebSession).filter_by(user_id=user.id).count() == 0
    replay = requests.get(
        f"{live_server.url}/", cookies={"sarhad_session": stolen}, allow_redirects=False, timeout=30
    )
    assert replay.status_code == 302 and "/sign-in" in replay.headers["Location"]


def test_the_api_and_collect_stay_cookie_free(live_server: LiveServer) -> None:
    browser, _ = _signed_in(live_server, "admin", None)
    health = requests.get(f"{live_server.url}/v1/health", timeout=30)
    assert "Set-Cookie" not in health.headers
    # The console's cookie opens no API route: the API signs in with bearer tokens only.
    answer = browser.http.get(f"{live_server.url}/v1/users/current", timeout=30)
    assert answer.status_code == 401


def test_pages_have_strict_headers_and_gzip(live_server: LiveServer) -> None:
    browser, _ = _signed_in(live_server, "admin", None)
    page = browser.http.get(
        f"{live_server.url}/", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=30
    )
    raw = page.raw.read(decode_content=False)
    assert page.headers["Content-Encoding"] == "gzip" and b"<html" in gzip.decompress(raw)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    css = browser.get("/assets/console.css")
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]


# ---- languages ------------------------------------------------------------------------------------


def test_language_is_remembered_on_the_user(live_server: LiveServer) -> None:
    browser, email = _signed_in(live_server, "admin", None)
    assert browser.post("/language", {"lang": "tg", "next": "/"}).status_code == 302
    assert "Лоиҳаҳои шумо" in browser.get("/").text
    with live_server.database.read() as session:
        assert session.query(User).filter_by(email=email).one().language == "tg"
    again = Browser.open(live_server.url)  # another browser: the choice follows the user
    again.sign_in(email)
    page = again.get("/")
    assert '<html lang="tg">' in page.text and "Лоиҳаҳои шумо" in page.text
    browser.post("/language", {"lang": "ru", "next": "/"})
    assert "Ваши проекты" in browser.get("/").text
    assert browser.post("/language", {"lang": "xx", "next": "/"}).status_code == 400


def test_sign_in_page_follows_the_browser_then_the_choice(live_server: LiveServer) -> None:
    browser = Browser.open(live_server.url)
    russian = browser.get("/sign-in", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert "Войти" in russian.text
    browser.post("/language", {"lang": "tg", "next": "/sign-in"}, token_from="/sign-in")
    assert "Ворид шудан" in browser.get("/sign-in", headers={"Accept-Language": "ru"}).text


# ---- roles ----------------------------------------------------------------------------------------


def test_roles_follow_the_api_rules(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    elsewhere = add_project(live_server.database, f"E-{uuid.uuid4().hex[:6]}")
    analyst, _ = _signed_in(live_server, "analyst", project_id)
    assert analyst.get(f"/projects/{project_id}").status_code == 200
    assert analyst.get(f"/projects/{elsewhere}").status_code == 403
    assert analyst.get(f"/projects/{project_id}/devices").status_code == 403
    files = {"xlsform": ("safety.xlsx", safety_xlsform(), XLSX_TYPE)}
    refused = analyst.post(
        f"/projects/{project_id}/forms", {}, files=files, token_from=f"/projects/{project_id}"
    )
    assert refused.status_code == 403
    assert "Upload an XLSForm" not in analyst.get(f"/projects/{project_id}").text
    assert analyst.get("/projects/999999").status_code == 403  # 403 before 404, as the API


# ---- forms ----------------------------------------------------------------------------------------


def test_upload_error_with_sheet_and_row_then_fixed_publish_and_state(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    browser, _ = _signed_in(live_server, "coordinator", project_id)
    page = f"/projects/{project_id}"
    bad = {"xlsform": ("safety.xlsx", safety_xlsform(broken=True), XLSX_TYPE)}
    refused = browser.post(f"{page}/forms", {}, files=bad, token_from=page)
    assert refused.status_code == 400
    assert "List name not in choices sheet" in refused.text
    assert "<strong>survey</strong>" in refused.text and "<strong>3</strong>" in refused.text

    good = {"xlsform": ("safety.xlsx", safety_xlsform(), XLSX_TYPE)}
    saved = browser.post(f"{page}/forms", {}, files=good, token_from=page)
    assert saved.status_code == 200 and "upload-ok" in saved.text
    form_page = browser.get(f"{page}/forms/safety")
    assert "Publish the draft" in form_page.text
    assert (
        browser.post(f"{page}/forms/safety/publish", {}, token_from=f"{page}/forms/safety").status_code == 302
    )
    form_page = browser.get(f"{page}/forms/safety")
    assert "2026120401" in form_page.text and "Publish the draft" not in form_page.text
    closed = browser.post(
        f"{page}/forms/safety/state", {"state": "closing"}, token_from=f"{page}/forms/safety"
    )
    assert closed.status_code == 302
    assert 'id="form-state">Closing' in browser.get(f"{page}/forms/safety").text
    listing = browser.get(page)
    assert "Safety survey" in listing.text and "2026120401" in listing.text


# ---- devices --------------------------------------------------------------------------------------


def test_device_create_revoke_rotate_and_a_printed_sheet(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    browser, _ = _signed_in(live_server, "coordinator", project_id)
    _publish_safety(browser, project_id)
    url = _token_url(browser, project_id, "Tablet A")
    assert url.startswith(f"{live_server.url}/v1/key/") and url.endswith(f"/projects/{project_id}")
    form_list = requests.get(f"{url}/formList", headers={"X-OpenRosa-Version": "1.0"}, timeout=30)
    assert form_list.status_code == 200 and "safety" in form_list.text

    devices_page = browser.get(f"/projects/{project_id}/devices").text
    device_id = re.search(r"/devices/(\d+)/rotate", devices_page).group(1)  # type: ignore[union-attr]
    rotated = browser.post(
        f"/projects/{project_id}/devices/{device_id}/rotate", {}, token_from=f"/projects/{project_id}/devices"
    )
    new_url = re.search(r'<code class="url">([^<]+)</code>', rotated.text).group(1)  # type: ignore[union-attr]
    assert new_url != url
    assert requests.get(f"{url}/formList", timeout=30).status_code in (401, 403)
    browser.post(
        f"/projects/{project_id}/devices/{device_id}/revoke", {}, token_from=f"/projects/{project_id}/devices"
    )
    assert requests.get(f"{new_url}/formList", timeout=30).status_code in (401, 403)

    sheet = browser.post(
        f"/projects/{project_id}/devices/sheet",
        {"prefix": "Tablet", "count": "4"},
        token_from=f"/projects/{project_id}/devices",
    )
    assert sheet.status_code == 200
    assert sheet.text.count('src="data:image/png;base64,') == 4
    assert all(f"Tablet {n}</figcaption>" in sheet.text for n in (1, 2, 3, 4))
    too_many = browser.post(
        f"/projects/{project_id}/devices/sheet",
        {"prefix": "T", "count": "999"},
        token_from=f"/projects/{project_id}/devices",
    )
    assert too_many.status_code == 400


# ---- submissions ----------------------------------------------------------------------------------


def test_submissions_table_review_comment_and_analyst_pseudonyms(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    # A project administrator sees raw values; a coordinator (unless the project allows it) and an
    # analyst see pseudonyms, as in the API and exports.
    coordinator, _ = _signed_in(live_server, "admin", project_id)
    _publish_safety(coordinator, project_id)
    instance = collect_submit(_token_url(coordinator, project_id, "Tablet 1"), "safety")
    name = re.search(rb"<respondent_name>([^<]*)</respondent_name>", instance.xml).group(1).decode()  # type: ignore[union-attr]

    table_path = f"/projects/{project_id}/forms/safety/submissions"
    table = coordinator.get(table_path).text
    assert "Respondent&#39;s name" in table and "Do you feel safe?" in table
    assert "Tablet 1" in table
    coordinator.post("/language", {"lang": "tg", "next": "/"})
    tajik = coordinator.get(table_path).text
    assert "Синну сол" in tajik and "Шумо худро бехатар ҳис мекунед?" in tajik

    one = f"{table_path}/{instance.instance_id}"
    assert coordinator.post(f"{one}/review", {"review_state": "approved"}, token_from=one).status_code == 302
    assert (
        coordinator.post(
            f"{one}/comments", {"body": "Checked with the facilitator"}, token_from=one
        ).status_code
        == 302
    )
    page = coordinator.get(one).text
    assert "Тасдиқшуда" in page and "Checked with the facilitator" in page
    approved = coordinator.get(f"{table_path}?review=approved").text
    assert instance.instance_id in approved
    assert instance.instance_id not in coordinator.get(f"{table_path}?review=rejected").text

    analyst, _ = _signed_in(live_server, "analyst", project_id)
    seen = analyst.get(one).text
    assert name and name not in seen and re.search(r"p_[0-9a-f]{16}", seen)
    assert "Tablet 1" not in analyst.get(table_path).text
    assert analyst.post(f"{one}/review", {"review_state": "rejected"}, token_from=one).status_code == 403


def test_keyset_pages_cover_every_submission_once(live_server: LiveServer) -> None:
    from tests.openrosa_setup import small_instance, small_xform  # noqa: F401 (the form's shape)

    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    coordinator, _ = _signed_in(live_server, "coordinator", project_id)
    _publish_safety(coordinator, project_id)
    url = _token_url(coordinator, project_id, "Tablet K")
    sent = {collect_submit(url, "safety", seed=n).instance_id for n in range(1, 102)}
    seen: list[str] = []
    path = f"/projects/{project_id}/forms/safety/submissions"
    pages = 0
    while path:
        page = coordinator.get(path).text
        pages += 1
        seen += re.findall(r"/submissions/(uuid:[0-9a-f-]+)\"", page)
        found = re.search(r'href="([^"]+)" id="next-page"', page)
        path = found.group(1).replace("&amp;", "&") if found else ""
    assert pages == 3 and len(seen) == 101 and set(seen) == sent
    assert coordinator.get(f"/projects/{project_id}/forms/safety/submissions?after=bogus").status_code == 400


def test_after_sign_in_only_local_pages(live_server: LiveServer) -> None:
    email = _email("admin")
    add_user(live_server.database, email, "admin", None)
    for target, expected in [
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/projects/1", "/projects/1"),
    ]:
        browser = Browser.open(live_server.url)
        answer = browser.post(
            "/sign-in", {"email": email, "password": PASSWORD, "next": target}, token_from="/sign-in"
        )
        assert answer.status_code == 302 and answer.headers["Location"] == expected, target
    asked = Browser.open(live_server.url).get("/projects/1?x=1")
    assert asked.headers["Location"] == "/sign-in?next=/projects/1?x%3D1"


def test_switching_language_on_a_page_made_by_a_post_goes_home(live_server: LiveServer) -> None:
    project_id = add_project(live_server.database, f"P-{uuid.uuid4().hex[:6]}")
    browser, _ = _signed_in(live_server, "coordinator", project_id)
    page = browser.post(
        f"/projects/{project_id}/devices", {"name": "T"}, token_from=f"/projects/{project_id}/devices"
    )
    next_field = re.search(r'name="next" value="([^"]*)"', page.text)
    assert next_field and next_field.group(1) == "/"
