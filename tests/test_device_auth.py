"""Devices sign in as ODK Collect does: a token in the URL, or Digest on a hub's local network."""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from sqlalchemy import func, select

from server import devices
from server.models import AppUser, DigestNonceUse, SubmissionVersion, utcnow
from server.projects import find_project
from tests.conftest import AppEnv, LiveServer, RunCli, ServerProcess, serve_in_thread
from tests.digest_client import CollectDigestAuth
from tests.openrosa_setup import (
    digest_url,
    key_url,
    make_device,
    make_project,
    new_uuid,
    publish_xform,
    small_instance,
    small_xform,
)

COLLECT = {"User-Agent": "org.odk.collect.android/v2024.3.1", "X-OpenRosa-Version": "1.0"}


@pytest.fixture(scope="module")
def project(live_server: LiveServer) -> int:
    project_id = make_project(live_server.database)
    publish_xform(live_server.app, project_id, small_xform("first", title="First"))
    publish_xform(live_server.app, project_id, small_xform("second", title="Second"))
    return project_id


def _form_ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    assert "text/xml" in response.headers["Content-Type"]
    return re.findall(r"<formID>([^<]+)</formID>", response.text)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _challenge(response: requests.Response) -> dict[str, str]:
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Digest ")
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header)}


def test_token_in_url_lists_forms(live_server: LiveServer, project: int) -> None:
    _, token = make_device(live_server.app, project)
    response = requests.get(
        f"{key_url(live_server.url, token, project)}/formList", headers=COLLECT, timeout=10
    )
    assert _form_ids(response) == ["first", "second"]


def test_rotated_revoked_and_foreign_tokens_are_refused(live_server: LiveServer, project: int) -> None:
    app_user_id, token = make_device(live_server.app, project)
    other_project = make_project(live_server.database)
    foreign = requests.get(f"{key_url(live_server.url, token, other_project)}/formList", timeout=10)
    assert foreign.status_code == 403 and "another project" in foreign.text

    database = live_server.database
    with live_server.app.app_context(), database.write() as w:
        new_token = devices.rotate_token(w.session, w.session.get(AppUser, app_user_id))
    old = requests.get(f"{key_url(live_server.url, token, project)}/formList", timeout=10)
    assert old.status_code == 401 and "QR code" in old.text
    assert "WWW-Authenticate" not in old.headers  # a token URL never asks Collect for a password
    assert requests.get(f"{key_url(live_server.url, new_token, project)}/formList", timeout=10).ok

    submission = f"{key_url(live_server.url, new_token, project)}/submission"
    assert requests.head(submission, timeout=10).status_code == 204  # now trusted for HEADs a few seconds
    with live_server.app.app_context(), database.write() as w:
        devices.revoke_app_user(w.session, w.session.get(AppUser, app_user_id))
    revoked = requests.get(f"{key_url(live_server.url, new_token, project)}/formList", timeout=10)
    assert revoked.status_code == 403 and "revoked" in revoked.text
    assert revoked.headers["X-OpenRosa-Version"] == "1.0"
    assert requests.head(submission, timeout=10).status_code == 403  # revoked here: forgotten at once


def test_a_device_revoked_by_another_process_cannot_submit(
    live_server: LiveServer, module_env: AppEnv, run_cli: RunCli, project: int
) -> None:
    app_user_id, token = make_device(live_server.app, project, name="Tablet revoked elsewhere")
    submission = f"{key_url(live_server.url, token, project)}/submission"
    assert requests.head(submission, timeout=10).status_code == 204
    run_cli(module_env, "app-user", "revoke", str(app_user_id), "--project", str(project))
    # The server may still answer this HEAD from the last few seconds' trust (HEAD_TRUST_SECONDS)...
    assert requests.head(submission, timeout=10).status_code in (204, 403)
    # ...but the POST always asks the database.
    post = requests.post(submission, files={"xml_submission_file": ("s.xml", b"<data/>")}, timeout=10)
    assert post.status_code == 403 and "revoked" in post.text


def test_digest_as_collect_does_it(live_server: LiveServer, project: int) -> None:
    make_device(live_server.app, project, name="Tablet 7", password="курбон-1234")  # Cyrillic
    url = f"{digest_url(live_server.url, project)}/formList"

    bare = requests.get(url, headers=COLLECT, timeout=10)
    assert bare.status_code == 401
    challenge = _challenge(bare)
    assert challenge["qop"] == "auth" and challenge["algorithm"] == "MD5"
    assert challenge["realm"] == "Sarhad" and challenge["charset"] == "UTF-8"
    assert "stale" not in challenge

    session = requests.Session()
    auth = CollectDigestAuth("Tablet 7", "курбон-1234")  # hashes as UTF-8 only because the challenge says so
    first = session.get(url, headers=COLLECT, auth=auth, timeout=10)
    assert _form_ids(first) == ["first", "second"] and len(first.history) == 1  # challenged once
    # Collect then reuses the nonce pre-emptively with nc+1: no second challenge.
    second = session.get(url, headers=COLLECT, auth=auth, timeout=10)
    assert second.status_code == 200 and second.history == []
    assert "nc=00000002" in second.request.headers["Authorization"]
    head = session.head(f"{digest_url(live_server.url, project)}/submission", auth=auth, timeout=10)
    assert head.status_code == 204 and int(head.headers["X-OpenRosa-Accept-Content-Length"]) > 0
    assert "nc=00000003" in head.request.headers["Authorization"] and auth.challenges_answered == 1

    # The cached nonce expires: the server says stale=true and Collect answers again without asking.
    with live_server.app.app_context():
        expired = devices.new_nonce(now=time.time() - devices.NONCE_LIFETIME_SECONDS - 30)
    auth._challenge = {**challenge, "nonce": expired}
    renewed = session.get(url, headers=COLLECT, auth=auth, timeout=10)
    assert renewed.status_code == 200 and len(renewed.history) == 1
    assert _challenge(renewed.history[0])["stale"] == "true" and auth.challenges_answered == 2

    # A cached nonce the server does not know (another server's, a forged one): refused without stale,
    # Collect forgets it, sends the request bare, and answers the fresh challenge.
    auth._challenge = {**challenge, "nonce": expired[:-4] + "0000"}
    recovered = session.get(url, headers=COLLECT, auth=auth, timeout=10)
    assert recovered.status_code == 200 and len(recovered.history) == 2

    wrong = requests.get(url, auth=CollectDigestAuth("Tablet 7", "wrong password"), timeout=10)
    assert wrong.status_code == 401 and "wrong" in wrong.text and len(wrong.history) == 1
    unknown = requests.get(url, auth=CollectDigestAuth("Nobody", "курбон-1234"), timeout=10)
    assert unknown.status_code == 401
    # What charset=UTF-8 is for: hashed as US-ASCII, as Collect does without it, the password fails.
    for charset, status in (("UTF-8", 200), (None, 401)):
        nonce = _challenge(requests.get(url, timeout=10))["nonce"]
        params = {**challenge, "nonce": nonce, "charset": charset}
        params = {k: v for k, v in params.items() if v is not None}
        header = CollectDigestAuth("Tablet 7", "курбон-1234").header_for(
            "GET", f"/v1/projects/{project}/formList", params
        )
        assert requests.get(url, headers={"Authorization": header}, timeout=10).status_code == status


def test_digest_user_revoked_or_of_another_project(live_server: LiveServer, project: int) -> None:
    app_user_id, _ = make_device(live_server.app, project, name="Tablet 10", password="a long password")
    other = make_project(live_server.database)
    foreign = requests.get(
        f"{digest_url(live_server.url, other)}/formList",
        auth=CollectDigestAuth("Tablet 10", "a long password"),
        timeout=10,
    )
    assert foreign.status_code == 401  # the username is only known in its own project
    with live_server.app.app_context(), live_server.database.write() as w:
        devices.revoke_app_user(w.session, w.session.get(AppUser, app_user_id))
    revoked = requests.get(
        f"{digest_url(live_server.url, project)}/formList",
        auth=CollectDigestAuth("Tablet 10", "a long password"),
        timeout=10,
    )
    assert revoked.status_code == 403 and "revoked" in revoked.text


def test_bad_credentials_are_refused_before_the_body_is_read(live_server: LiveServer, project: int) -> None:
    """A POST announcing 50 MB whose body never comes still gets its 401 at once."""
    host, port = live_server.url.removeprefix("http://").split(":")
    for authorization in ("", 'Authorization: Digest username="Nobody", realm="Sarhad"\r\n'):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                (
                    f"POST /v1/projects/{project}/submission HTTP/1.1\r\nHost: {host}\r\n"
                    "X-OpenRosa-Version: 1.0\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                    f"{authorization}Content-Length: 50000000\r\n\r\n"
                ).encode()
            )
            head = sock.recv(65536).decode("latin-1")
        assert head.startswith("HTTP/1.1 401"), head
        assert "WWW-Authenticate: Digest" in head


def _digest_header(nonce: str, uri: str, password: str, method: str = "GET") -> str:
    ha1 = _md5(f"Tablet 8:Sarhad:{password}")
    ha2 = _md5(f"{method}:{uri}")
    response = _md5(f"{ha1}:{nonce}:00000001:abcdef:auth:{ha2}")
    return (
        f'Digest username="Tablet 8", realm="Sarhad", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", qop=auth, nc=00000001, cnonce="abcdef", algorithm=MD5'
    )


def test_expired_nonce_answers_stale_and_forged_nonce_is_refused(
    live_server: LiveServer, project: int
) -> None:
    make_device(live_server.app, project, name="Tablet 8", password="a long password")
    uri = f"/v1/projects/{project}/formList"
    with live_server.app.app_context():
        old = devices.new_nonce(now=time.time() - devices.NONCE_LIFETIME_SECONDS - 30)
        fresh = devices.new_nonce()
    stale = requests.get(
        live_server.url + uri,
        headers={"Authorization": _digest_header(old, uri, "a long password")},
        timeout=10,
    )
    assert stale.status_code == 401 and _challenge(stale)["stale"] == "true"

    forged = fresh[:-4] + "0000"
    refused = requests.get(
        live_server.url + uri,
        headers={"Authorization": _digest_header(forged, uri, "a long password")},
        timeout=10,
    )
    assert refused.status_code == 401 and "stale" not in _challenge(refused)

    ok = requests.get(
        live_server.url + uri,
        headers={"Authorization": _digest_header(fresh, uri, "a long password")},
        timeout=10,
    )
    assert ok.status_code == 200
    other_uri = requests.get(
        live_server.url + uri,
        headers={
            "Authorization": _digest_header(fresh, f"/v1/projects/{project}/submission", "a long password")
        },
        timeout=10,
    )
    assert other_uri.status_code == 401


def test_a_replayed_digest_signature_is_refused(live_server: LiveServer, project: int) -> None:
    """Digest (qop=auth) signs the method and URL, not the body: someone who overhears a device's
    submission on a hub's plain-HTTP network must not be able to send a forged one under its header."""
    make_device(live_server.app, project, name="Tablet 12", password="a long password")
    submission = f"{digest_url(live_server.url, project)}/submission"
    auth = CollectDigestAuth("Tablet 12", "a long password")
    session = requests.Session()
    genuine, forged = new_uuid(), new_uuid()

    def post(instance_id: str, auth: CollectDigestAuth | None, headers: dict[str, str]) -> requests.Response:
        files = {"xml_submission_file": ("submission.xml", small_instance(instance_id, form_id="first"))}
        return session.post(submission, files=files, headers=headers, auth=auth, timeout=10)

    assert post(genuine, auth, COLLECT).status_code == 201
    replayed = post(forged, None, {**COLLECT, "Authorization": auth.sent[-1]})
    assert replayed.status_code == 401 and _challenge(replayed)["stale"] == "true"
    with live_server.database.read() as session_db:
        stored = set(session_db.scalars(select(SubmissionVersion.instance_id)))
    assert genuine in stored and forged not in stored

    # The same for a download, on a fresh connection (another worker would answer the same: the
    # signatures used are in the database). The device itself goes on with nc+1 as before.
    listed = f"{digest_url(live_server.url, project)}/formList"
    assert requests.get(listed, headers=COLLECT, auth=auth, timeout=10).status_code == 200
    again = requests.get(listed, headers={**COLLECT, "Authorization": auth.sent[-1]}, timeout=10)
    assert again.status_code == 401 and _challenge(again)["stale"] == "true"
    assert requests.get(listed, headers=COLLECT, auth=auth, timeout=10).status_code == 200
    assert auth.challenges_answered == 1

    # What is recorded outlives its nonce only by minutes: older rows go with the next signed request.
    long_ago = utcnow() - 2 * devices.NONCE_USES_KEPT
    with live_server.database.write() as writer:
        writer.session.add(DigestNonceUse(nonce="an old nonce", nc=1, used_at=long_ago))
    devices._last_purge = 0.0
    assert requests.get(listed, headers=COLLECT, auth=auth, timeout=10).status_code == 200
    with live_server.database.read() as session_db:
        assert session_db.get(DigestNonceUse, ("an old nonce", 1)) is None
        assert session_db.scalar(select(func.count()).select_from(DigestNonceUse)) >= 4


@pytest.fixture
def https_server(make_env: Callable[[], AppEnv]) -> Iterator[LiveServer]:
    """A server told that one proxy in front of it terminates HTTPS."""
    live, stop = serve_in_thread(make_env().app(trusted_proxies=1))
    yield live
    stop()


def test_basic_only_over_https(live_server: LiveServer, project: int, https_server: LiveServer) -> None:
    make_device(live_server.app, project, name="Tablet 9", password="a long password")
    plain = requests.get(
        f"{digest_url(live_server.url, project)}/formList", auth=("Tablet 9", "a long password"), timeout=10
    )
    assert plain.status_code == 401 and "HTTPS" in plain.text

    project_b = make_project(https_server.database)
    publish_xform(https_server.app, project_b, small_xform("third", title="Third"))
    make_device(https_server.app, project_b, name="Tablet 9", password="a long password")
    url = f"{digest_url(https_server.url, project_b)}/formList"
    over_https = requests.get(
        url, auth=("Tablet 9", "a long password"), headers={"X-Forwarded-Proto": "https"}, timeout=10
    )
    assert _form_ids(over_https) == ["third"]
    wrong = requests.get(url, auth=("Tablet 9", "nope"), headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert wrong.status_code == 401


def test_assignments_narrow_the_form_list(live_server: LiveServer, project: int) -> None:
    from server.users import create_user

    with live_server.database.write() as w:
        create_user(
            w.session,
            "coord-devices@example.org",
            "a long enough password",
            "coordinator",
            find_project(w.session, project),
        )
    token = requests.post(
        f"{live_server.url}/v1/sessions",
        json={"email": "coord-devices@example.org", "password": "a long enough password"},
        timeout=10,
    ).json()["token"]
    admin = {"Authorization": f"Bearer {token}"}
    made = requests.post(
        f"{live_server.url}/v1/projects/{project}/app-users",
        json={"displayName": "Assigned tablet"},
        headers=admin,
        timeout=10,
    )
    assert made.status_code == 200, made.text
    device, device_token = made.json()["id"], made.json()["token"]
    app_users = f"{live_server.url}/v1/projects/{project}/app-users"
    assert requests.post(app_users, json={}, headers=admin, timeout=10).status_code == 400
    # Collect cannot send a non-ASCII username, so such a name is refused for a password...
    cyrillic = {"displayName": "Планшети Ванҷ", "password": "a long password"}
    refused = requests.post(app_users, json=cyrillic, headers=admin, timeout=10)
    assert refused.status_code == 400 and "Latin" in refused.text
    # ...and welcome on a device signed in by its token.
    del cyrillic["password"]
    assert requests.post(app_users, json=cyrillic, headers=admin, timeout=10).json()["hasPassword"] is False
    assert len(device_token) >= 48
    form_list = f"{key_url(live_server.url, device_token, project)}/formList"
    assert _form_ids(requests.get(form_list, timeout=10)) == ["first", "second"]

    assign = f"{live_server.url}/v1/projects/{project}/forms/second/assignments/app-user/{device}"
    assert requests.post(assign, headers=admin, timeout=10).ok
    assert _form_ids(requests.get(form_list, timeout=10)) == ["second"]
    listed = requests.get(
        f"{live_server.url}/v1/projects/{project}/forms/second/assignments/app-user",
        headers=admin,
        timeout=10,
    ).json()
    assert [a["displayName"] for a in listed] == ["Assigned tablet"] and listed[0]["token"] is None
    assert requests.delete(assign, headers=admin, timeout=10).ok
    assert _form_ids(requests.get(form_list, timeout=10)) == ["first", "second"]

    listing = requests.get(f"{live_server.url}/v1/projects/{project}/app-users", headers=admin, timeout=10)
    assert all(a["token"] is None for a in listing.json())  # a token is shown only once
    gone = requests.delete(
        f"{live_server.url}/v1/projects/{project}/app-users/{device}", headers=admin, timeout=10
    )
    assert gone.ok
    assert requests.get(form_list, timeout=10).status_code == 403
    assert requests.get(f"{live_server.url}/v1/projects/{project}/app-users", timeout=10).status_code == 401


def test_nonces_hold_across_gunicorn_workers_and_hosts(
    make_env: Callable[[], AppEnv], server_process: Callable[..., ServerProcess]
) -> None:
    """Nonces live on no server: any worker of any host sharing the secret accepts another's nonce."""
    env = make_env()
    gunicorn = server_process(env, workers=2)
    second_host, stop = serve_in_thread(env.app())  # another process reading the same settings
    try:
        project_id = make_project(second_host.database)
        publish_xform(second_host.app, project_id, small_xform("shared", title="Shared"))
        make_device(second_host.app, project_id, name="Tablet 11", password="a long password")
        auth = CollectDigestAuth("Tablet 11", "a long password")
        for i in range(12):
            base = gunicorn.url if i % 3 else second_host.url
            # A new connection each time, so that the kernel hands them to different workers.
            response = requests.get(
                f"{digest_url(base, project_id)}/formList",
                auth=auth,
                headers={**COLLECT, "Connection": "close"},
                timeout=30,
            )
            assert _form_ids(response) == ["shared"]
        assert auth.challenges_answered == 1 and "nc=0000000c" in auth.sent[-1]
    finally:
        stop()
