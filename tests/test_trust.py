"""Trust basics over real HTTP and the real CLI: security headers on every answer, sign-in limits shared
through the database (429 with Retry-After, lifted by ``sarhad user unlock``), the same for wrong device
keys, Digest passwords and hub tokens, and the draft's media closed to analysts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from requests.auth import HTTPDigestAuth
from sqlalchemy import delete, func, select

from server import create_app
from server.config import settings
from server.models import SigninFailure
from server.signin_limits import MAX_FAILURES
from tests.conftest import AppEnv, RunCli, serve_in_thread
from tests.datasets_fixtures import PASSWORD, web_user
from tests.openrosa_setup import digest_url, key_url, make_device
from tests.test_submissions_api import Survey, make_survey


@pytest.fixture(scope="module")
def survey(live_server: Any) -> Survey:
    return make_survey(live_server, "trust")


def _assert_protected(reply: requests.Response, *, no_store: bool = True) -> None:
    assert reply.headers["X-Content-Type-Options"] == "nosniff", reply.url
    assert reply.headers["Referrer-Policy"] == "no-referrer", reply.url
    assert reply.headers["X-Frame-Options"] == "DENY", reply.url
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"], reply.url
    if no_store:
        assert reply.headers["Cache-Control"] == "no-store", reply.url
    else:
        assert "no-store" not in reply.headers.get("Cache-Control", ""), reply.url


def test_security_headers_on_every_answer(survey: Survey) -> None:
    base = survey.url
    sign_in = requests.post(
        f"{base}/v1/sessions",
        json={"email": survey.users["admin"].email, "password": PASSWORD},
        timeout=30,
    )
    assert sign_in.status_code == 200
    answers = [
        sign_in,
        requests.get(f"{base}/v1/health", timeout=30),
        requests.get(f"{base}/v1/projects", timeout=30),  # a 401 error answer
        survey.get("/submissions"),
        survey.get("/submissions/uuid:s-1"),
        survey.get("/submissions/uuid:s-1.xml"),
        survey.get("/submissions/uuid:s-1/attachments/p1.jpg"),
        survey.get(".svc/Submissions"),
        survey.get("/submissions.csv.zip"),
        survey.get("/export.jsonl"),
    ]
    for reply in answers:
        assert reply.status_code in (200, 401), (reply.url, reply.status_code, reply.text[:200])
        _assert_protected(reply)
    # OpenRosa keeps its own caching (Collect uses ETags on forms and media), with the other headers.
    _, token = make_device(survey.live.app, survey.project)
    form_list = requests.get(
        f"{key_url(base, token, survey.project)}/formList", headers={"X-OpenRosa-Version": "1.0"}, timeout=30
    )
    assert form_list.status_code == 200
    assert form_list.headers["X-OpenRosa-Version"] == "1.0"
    _assert_protected(form_list, no_store=False)


def test_analyst_may_not_read_the_drafts_media(survey: Survey) -> None:
    for who, status in (("analyst", 403), ("coordinator", 404), ("admin", 404)):  # 404: no draft now
        reply = survey.get("/draft/attachments", who=who)
        assert reply.status_code == status, (who, reply.text)
        reply = survey.get("/draft/attachments/logo.png", who=who)
        assert reply.status_code == status, (who, reply.text)


def _failures(survey: Survey) -> int:
    with survey.live.database.read() as session:
        return int(session.scalar(select(func.count()).select_from(SigninFailure)) or 0)


def _clear(survey: Survey) -> None:
    with survey.live.database.write() as w:
        w.session.execute(delete(SigninFailure))


def test_sign_in_locks_after_ten_failures_and_the_cli_unlocks(
    survey: Survey, module_env: AppEnv, run_cli: RunCli
) -> None:
    _clear(survey)
    email = f"lock-{uuid.uuid4().hex[:6]}@example.tj"
    web_user(survey.live, email, "analyst", survey.project)
    url = f"{survey.url}/v1/sessions"
    for _ in range(MAX_FAILURES):
        wrong = requests.post(url, json={"email": email, "password": "wrong password"}, timeout=30)
        assert wrong.status_code == 401
    locked = requests.post(url, json={"email": email, "password": PASSWORD}, timeout=30)
    assert locked.status_code == 429, locked.text
    assert locked.json()["code"] == "429.1"
    assert 1 <= int(locked.headers["Retry-After"]) <= 300
    _assert_protected(locked)
    # The address is locked too: another account from here is refused, even with its right password.
    other = requests.post(
        url, json={"email": survey.users["coordinator"].email, "password": PASSWORD}, timeout=30
    )
    assert other.status_code == 429
    assert _failures(survey) == 2 * MAX_FAILURES  # refused attempts are not counted

    unlocked = run_cli(module_env, "user", "unlock", email.upper(), "--address", "127.0.0.1")
    assert "unlocked" in unlocked.stdout and f"{2 * MAX_FAILURES} failed" in unlocked.stdout
    assert requests.post(url, json={"email": email, "password": PASSWORD}, timeout=30).status_code == 200
    usage = run_cli(module_env, "user", "unlock", check=False)
    assert usage.returncode == 2


def test_a_right_password_clears_the_accounts_count(survey: Survey) -> None:
    _clear(survey)
    email = f"clear-{uuid.uuid4().hex[:6]}@example.tj"
    web_user(survey.live, email, "analyst", survey.project)  # signs in once: clears nothing yet
    url = f"{survey.url}/v1/sessions"
    for _ in range(MAX_FAILURES - 1):
        assert requests.post(url, json={"email": email, "password": "nope"}, timeout=30).status_code == 401
    assert requests.post(url, json={"email": email, "password": PASSWORD}, timeout=30).status_code == 200
    # The account starts again from zero; the address keeps its count.
    with survey.live.database.read() as session:
        scopes = dict(
            session.execute(select(SigninFailure.scope, func.count()).group_by(SigninFailure.scope)).all()
        )
    assert scopes == {"address": MAX_FAILURES - 1}
    _clear(survey)


def test_wrong_device_keys_are_limited_per_address_right_ones_still_work(survey: Survey) -> None:
    _clear(survey)
    _, token = make_device(survey.live.app, survey.project)
    headers = {"X-OpenRosa-Version": "1.0"}
    for n in range(MAX_FAILURES):
        wrong = requests.get(f"{key_url(survey.url, f'wrong{n}', survey.project)}/formList", headers=headers)
        assert wrong.status_code == 401
    refused = requests.get(f"{key_url(survey.url, 'wrong-again', survey.project)}/formList", headers=headers)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert b"OpenRosaResponse" in refused.content  # Collect shows the message
    # A real key is still served from the same address (many tablets may share one carrier address).
    good = requests.get(f"{key_url(survey.url, token, survey.project)}/formList", headers=headers)
    assert good.status_code == 200
    # Sync routes: a wrong hub token from this address is refused the same way.
    hub = requests.get(f"{survey.url}/v1/sync/hub", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert hub.status_code == 429
    _clear(survey)


def test_device_passwords_are_not_tried_while_the_address_is_locked(survey: Survey) -> None:
    _clear(survey)
    name = f"facilitator {uuid.uuid4().hex[:4]}"
    make_device(survey.live.app, survey.project, name, password="right password")
    url = f"{digest_url(survey.url, survey.project)}/formList"
    headers = {"X-OpenRosa-Version": "1.0"}
    for _ in range(MAX_FAILURES):
        wrong = requests.get(url, headers=headers, auth=HTTPDigestAuth(name, "wrong password"), timeout=30)
        assert wrong.status_code == 401
    right = requests.get(url, headers=headers, auth=HTTPDigestAuth(name, "right password"), timeout=30)
    assert right.status_code == 429
    _clear(survey)
    right = requests.get(url, headers=headers, auth=HTTPDigestAuth(name, "right password"), timeout=30)
    assert right.status_code == 200


def test_limits_are_shared_by_every_server_of_one_database(survey: Survey) -> None:
    """Two apps (two workers, or two hosts) on one database see the same failures."""
    _clear(survey)
    second_app = create_app(settings(survey.live.app))
    second, stop = serve_in_thread(second_app)
    try:
        email = f"shared-{uuid.uuid4().hex[:6]}@example.tj"
        web_user(survey.live, email, "analyst", survey.project)
        for n in range(MAX_FAILURES):
            base = survey.url if n % 2 else second.url
            reply = requests.post(f"{base}/v1/sessions", json={"email": email, "password": "x"}, timeout=30)
            assert reply.status_code == 401
        for base in (survey.url, second.url):
            reply = requests.post(
                f"{base}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=30
            )
            assert reply.status_code == 429
    finally:
        stop()
        _clear(survey)
