"""The audit log over real HTTP and the CLI: GET /v1/audits in Central's shape (filters, categories,
paging, extended metadata), sign-ins/failures/locks recorded, and append-only enforced by the database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DatabaseError

from server import audit
from server.models import AuditEvent
from server.projects import create_project
from server.signin_limits import MAX_FAILURES
from server.users import create_user, grant_role
from tests.conftest import AppEnv, LiveServer, RunCli

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def admin(live_server: LiveServer) -> dict[str, str]:
    with live_server.database.write() as w:
        project = create_project(w.session, "Audited")
        root = create_user(w.session, "auditor@example.org", PASSWORD, "admin")
        analyst = create_user(w.session, "seen@example.org", PASSWORD, "analyst", project, actor=root)
        grant_role(w.session, analyst, project, "coordinator", actor=root)
    r = requests.post(
        f"{live_server.url}/v1/sessions",
        json={"email": "auditor@example.org", "password": PASSWORD},
        timeout=10,
    )
    assert r.status_code == 200
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _audits(live: LiveServer, headers: dict[str, str], **params: object) -> list[dict[str, object]]:
    r = requests.get(f"{live.url}/v1/audits", params=params, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_shape_filters_and_paging(live_server: LiveServer, admin: dict[str, str]) -> None:
    every = _audits(live_server, admin)
    assert every, "creating users and signing in is audited"
    first = every[0]
    assert {"action", "actorId", "acteeId", "details", "loggedAt", "notes"} <= set(first)
    assert first["action"] == "user.session.create"  # newest first
    stamps = [e["loggedAt"] for e in every]
    assert stamps == sorted(stamps, reverse=True)

    actions = {e["action"] for e in every}
    assert {"user.create", "user.assignment.create", "user.session.create", "project.create"} <= actions
    assert [e["action"] for e in _audits(live_server, admin, action="user.create")] == ["user.create"] * 2
    users = {e["action"] for e in _audits(live_server, admin, action="user")}
    assert users == {"user.create", "user.assignment.create", "user.session.create"}
    assert "project.create" not in users
    assert {e["action"] for e in _audits(live_server, admin, action="nonverbose")} == actions

    # paging: limit/offset walk the same order
    two = _audits(live_server, admin, limit=2)
    assert two == every[:2] and _audits(live_server, admin, limit=2, offset=2) == every[2:4]

    # dates: start inclusive, end exclusive; a bare date is its midnight UTC
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    assert _audits(live_server, admin, start=tomorrow) == []
    assert _audits(live_server, admin, end=tomorrow) == every
    newest = every[0]["loggedAt"]
    assert _audits(live_server, admin, end=newest) == every[1:]
    assert _audits(live_server, admin, start=newest)[-1] == every[0]
    bad = requests.get(f"{live_server.url}/v1/audits?start=yesterday", headers=admin, timeout=10)
    assert bad.status_code == 400 and "start" in bad.json()["details"]["fields"]

    # extended metadata: actor and actee objects instead of ids
    extended = requests.get(
        f"{live_server.url}/v1/audits",
        params={"action": "user.assignment.create"},
        headers={**admin, "X-Extended-Metadata": "true"},
        timeout=10,
    ).json()
    assert extended[0]["actor"]["displayName"] == "auditor"
    assert extended[0]["actee"]["displayName"] == "seen"
    assert extended[0]["actorId"] == extended[0]["actor"]["id"]
    assert extended[0]["details"]["role"] == "coordinator"


def test_admins_only(live_server: LiveServer, admin: dict[str, str]) -> None:
    assert requests.get(f"{live_server.url}/v1/audits", timeout=10).status_code == 401
    r = requests.post(
        f"{live_server.url}/v1/sessions", json={"email": "seen@example.org", "password": PASSWORD}, timeout=10
    )
    other = {"Authorization": f"Bearer {r.json()['token']}"}
    assert requests.get(f"{live_server.url}/v1/audits", headers=other, timeout=10).status_code == 403


def test_failed_sign_ins_and_the_lock_are_audited(live_server: LiveServer, admin: dict[str, str]) -> None:
    with live_server.database.write() as w:
        create_user(w.session, "locked@example.org", PASSWORD, "admin")
    for _ in range(MAX_FAILURES + 1):
        requests.post(
            f"{live_server.url}/v1/sessions",
            json={"email": "locked@example.org", "password": "wrong wrong wrong"},
            timeout=10,
        )
    failures = _audits(live_server, admin, action="user.session.failure")
    assert len([f for f in failures if f["acteeId"] == "locked@example.org"]) == MAX_FAILURES
    locks = _audits(live_server, admin, action="user.session.lock")
    assert {lock["acteeId"] for lock in locks} >= {"locked@example.org"}
    with live_server.database.write() as w:
        from server import signin_limits

        signin_limits.unlock(w.session, address="127.0.0.1")  # the address lock would stop other tests
    assert _audits(live_server, admin, action="user.session.unlock")[0]["acteeId"] == "127.0.0.1"


def test_the_database_refuses_changes_to_audit_rows(live_server: LiveServer) -> None:
    with live_server.database.write() as w:
        audit.record(w.session, "test.append_only", target_type="test", target_id="1")
    for statement in (
        update(AuditEvent).where(AuditEvent.action == "test.append_only").values(action="x"),
        delete(AuditEvent).where(AuditEvent.action == "test.append_only"),
    ):
        with pytest.raises(DatabaseError, match="append-only"), live_server.database.write() as w:
            w.session.execute(statement)
    with pytest.raises(DatabaseError, match="append-only"), live_server.database.write() as w:
        w.session.execute(text("DELETE FROM audit_event"))
    with live_server.database.read() as session:
        assert session.query(AuditEvent).filter(AuditEvent.action == "test.append_only").count() == 1


def test_cli(module_env: AppEnv, live_server: LiveServer, admin: dict[str, str], run_cli: RunCli) -> None:
    out = run_cli(module_env, "audit", "--action", "user", "--limit", "3").stdout.splitlines()
    assert len(out) == 3 and all(line.split("\t")[1].startswith("user.") for line in out)
    shown = json.loads(run_cli(module_env, "audit", "--action", "user.create", "--json").stdout)
    assert shown == _audits(live_server, admin, action="user.create")
    assert run_cli(module_env, "audit", "--start", "2999-01-01").stdout == ""
