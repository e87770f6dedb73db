"""Entities of an entity list over real HTTP, in Central's shapes: create one and many, read, update
with baseVersion or force, versions, soft delete, CSV and OData, roles and the audit log."""

from __future__ import annotations

import csv
import io
import re
import threading
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import select

from server.datasets.odata_schema import odata_name
from server.models import AuditEvent, Entity, EntityVersion
from server.projects import create_project
from server.users import create_user
from tests.conftest import LiveServer

PASSWORD = "a long enough password"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UA = {"User-Agent": "sarhad-tests/1"}


@dataclass
class Lists:
    live: LiveServer
    url: str
    project: int
    coordinator: dict[str, str]
    analyst: dict[str, str]
    outsider: dict[str, str]
    coordinator_id: int

    def new_list(self, name: str, *properties: str) -> str:
        made = requests.post(self.url, json={"name": name}, headers=self.coordinator, timeout=10)
        assert made.status_code == 200, made.text
        for prop in properties:
            added = requests.post(
                f"{self.url}/{name}/properties", json={"name": prop}, headers=self.coordinator, timeout=10
            )
            assert added.status_code == 200, added.text
        return f"{self.url}/{name}"

    def stored(self) -> int:
        with self.live.database.read() as session:
            return len(session.scalars(select(Entity.id)).all())


def _signed_in(url: str, email: str) -> dict[str, str]:
    r = requests.post(f"{url}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=10)
    return {**UA, "Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(scope="module")
def lists(live_server: LiveServer) -> Lists:
    with live_server.database.write() as w:
        project = create_project(w.session, "Entities")
        other = create_project(w.session, "Entities other")
        coordinator = create_user(w.session, "coord@entities.example.org", PASSWORD, "coordinator", project)
        create_user(w.session, "analyst@entities.example.org", PASSWORD, "analyst", project)
        create_user(w.session, "outsider@entities.example.org", PASSWORD, "coordinator", other)
        w.session.flush()
        coordinator_id = coordinator.id
    url = live_server.url
    return Lists(
        live_server,
        f"{url}/v1/projects/{project.id}/datasets",
        project.id,
        _signed_in(url, "coord@entities.example.org"),
        _signed_in(url, "analyst@entities.example.org"),
        _signed_in(url, "outsider@entities.example.org"),
        coordinator_id,
    )


def _create(lists: Lists, base: str, body: dict[str, Any]) -> dict[str, Any]:
    made = requests.post(f"{base}/entities", json=body, headers=lists.coordinator, timeout=10)
    assert made.status_code == 200, made.text
    return made.json()  # type: ignore[no-any-return]


def test_create_one_get_and_list_as_central(lists: Lists) -> None:
    base = lists.new_list("concerns", "district", "status")
    given = str(uuidlib.uuid4())
    body = _create(
        lists,
        base,
        {"uuid": f"uuid:{given.upper()}", "label": "Vahdat: police conduct", "data": {"district": "Vahdat"}},
    )
    assert body["uuid"] == given  # "uuid:" dropped, lower case, as Central
    assert body["creatorId"] == lists.coordinator_id and body["conflict"] is None
    assert ISO_Z.match(body["createdAt"]) and body["updatedAt"] is None and body["deletedAt"] is None
    current = body["currentVersion"]
    assert current["version"] == 1 and current["baseVersion"] is None and current["current"] is True
    assert current["label"] == "Vahdat: police conduct" and current["data"] == {"district": "Vahdat"}
    assert current["userAgent"] == "sarhad-tests/1" and current["creatorId"] == lists.coordinator_id
    assert current["dataReceived"] == {"district": "Vahdat", "label": "Vahdat: police conduct"}

    generated = _create(lists, base, {"label": "Rudaki", "data": {"district": "Rudaki", "status": "open"}})
    assert uuidlib.UUID(generated["uuid"]).version == 4

    one = requests.get(f"{base}/entities/{given}", headers=lists.analyst, timeout=10)  # any role reads
    assert one.status_code == 200 and one.json()["currentVersion"]["data"] == {"district": "Vahdat"}
    listed = requests.get(f"{base}/entities", headers=lists.analyst, timeout=10).json()
    assert [e["uuid"] for e in listed] == [generated["uuid"], given]  # newest first
    assert all("data" not in e["currentVersion"] for e in listed)  # the list carries no properties
    extended = requests.get(
        f"{base}/entities", headers={**lists.analyst, "X-Extended-Metadata": "true"}, timeout=10
    ).json()
    assert extended[0]["creator"]["displayName"] and extended[0]["creator"]["id"] == lists.coordinator_id

    summary = requests.get(lists.url, headers={**lists.analyst, "X-Extended-Metadata": "true"}).json()
    concerns = next(s for s in summary if s["name"] == "concerns")
    assert concerns["entities"] == 2 and concerns["conflicts"] == 0 and ISO_Z.match(concerns["lastEntity"])
    assert requests.get(f"{base}/entities/{uuidlib.uuid4()}", headers=lists.analyst).status_code == 404
    assert requests.get(f"{base}/entities/not-a-uuid", headers=lists.analyst).status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"label": "x", "data": {"postcode": "2000"}}, "400.28"),  # no such property
        ({"label": "x", "data": {"district": 7}}, "400.11"),  # values are strings
        ({"data": {"district": "Vahdat"}}, "400.2"),  # a new entity needs a label
        ({"label": "  ", "data": {}}, "400.8"),
        ({"label": "x", "data": {}, "extra": 1}, "400.31"),
        ({"uuid": "12345", "label": "x"}, "400.11"),
        ({"uuid": "a0b1c2d3-0000-1000-8000-000000000000", "label": "x"}, "400.11"),  # not version 4
        (
            {"entities": [{"label": "ok"}, {"label": "x", "data": {"nope": "1"}}], "source": {"name": "f"}},
            "400.28",
        ),
        ({"entities": [{"label": "ok"}]}, "400.2"),  # a bulk upload names its source
        ({"entities": [], "source": {"name": "f"}}, "400.31"),
        ({"entities": [{"label": "ok"}], "source": {"name": "f", "size": "big"}}, "400.11"),
        ([1, 2], "400.1"),
    ],
)
def test_bad_entities_are_400_and_store_nothing(lists: Lists, body: Any, code: str) -> None:
    base = lists.new_list(f"bad_{uuidlib.uuid4().hex[:8]}", "district")
    before = lists.stored()
    refused = requests.post(f"{base}/entities", json=body, headers=lists.coordinator, timeout=10)
    assert refused.status_code == 400 and refused.json()["code"] == code, refused.text
    assert lists.stored() == before


def test_duplicate_uuids_are_409(lists: Lists) -> None:
    base = lists.new_list("dupes", "district")
    first = _create(lists, base, {"label": "one"})
    again = requests.post(
        f"{base}/entities", json={"uuid": first["uuid"], "label": "two"}, headers=lists.coordinator
    )
    assert again.status_code == 409 and again.json()["code"] == "409.3"
    twice = str(uuidlib.uuid4())
    bulk = {
        "entities": [{"uuid": twice, "label": "a"}, {"uuid": twice, "label": "b"}],
        "source": {"name": "f"},
    }
    before = lists.stored()
    assert requests.post(f"{base}/entities", json=bulk, headers=lists.coordinator).status_code == 409
    assert lists.stored() == before


def test_create_many_with_source(lists: Lists) -> None:
    base = lists.new_list("towns", "state")
    body = {
        "entities": [
            {"label": "Sydney", "data": {"state": "NSW"}},
            {"label": "Darwin", "data": {"state": "NT"}},
        ],
        "source": {"name": "towns.csv", "size": 42},
    }
    made = requests.post(f"{base}/entities", json=body, headers=lists.coordinator, timeout=10)
    assert made.json() == {"success": True}, made.text
    listed = requests.get(f"{base}/entities", headers=lists.coordinator).json()
    assert len(listed) == 2
    infinite = requests.post(  # Python's JSON reads Infinity; no database stores it
        f"{base}/entities",
        data='{"entities": [{"label": "x"}], "source": {"name": "f", "size": Infinity}}',
        headers={**lists.coordinator, "Content-Type": "application/json"},
    )
    assert infinite.status_code == 400 and infinite.json()["code"] == "400.11"
    versions = requests.get(f"{base}/entities/{listed[0]['uuid']}/versions", headers=lists.coordinator).json()
    assert versions[0]["source"] == {
        "name": "towns.csv",
        "size": 42,
        "count": 2,
        "userAgent": "sarhad-tests/1",
    }


def test_update_needs_the_current_version_or_force(lists: Lists) -> None:
    base = lists.new_list("updates", "district", "status")
    made = _create(lists, base, {"label": "Vahdat", "data": {"district": "Vahdat", "status": "open"}})
    one = f"{base}/entities/{made['uuid']}"

    updated = requests.patch(
        f"{one}?baseVersion=1", json={"data": {"status": "in plan"}}, headers=lists.coordinator
    )
    assert updated.status_code == 200, updated.text
    current = updated.json()["currentVersion"]
    assert current["version"] == 2 and current["baseVersion"] == 1 and current["label"] == "Vahdat"
    assert current["data"] == {"district": "Vahdat", "status": "in plan"}  # the unsent property is kept
    assert current["dataReceived"] == {"status": "in plan"}
    assert ISO_Z.match(updated.json()["updatedAt"])

    for query in ("?baseVersion=1", "", "?baseVersion=x", "?force=false&baseVersion=3"):
        stale = requests.patch(
            f"{one}{query}", json={"data": {"status": "resolved"}}, headers=lists.coordinator
        )
        assert stale.status_code == 409 and stale.json()["code"] == "409.15", (query, stale.text)
        assert stale.json()["details"]["current"] == "2"
    unchanged = requests.get(one, headers=lists.coordinator).json()["currentVersion"]
    assert unchanged["version"] == 2 and unchanged["data"]["status"] == "in plan"

    forced = requests.patch(f"{one}?force=True", json={"label": "Vahdat (2)"}, headers=lists.coordinator)
    assert forced.status_code == 200, forced.text
    assert (
        forced.json()["currentVersion"]["version"] == 3
        and forced.json()["currentVersion"]["baseVersion"] == 2
    )
    assert forced.json()["currentVersion"]["label"] == "Vahdat (2)"

    for bad, code in (
        ({"data": {"nope": "1"}}, "400.28"),
        ({}, "400.28"),
        ({"uuid": made["uuid"]}, "400.28"),
        ({"label": "y", "foo": 1}, "400.31"),
    ):
        refused = requests.patch(f"{one}?baseVersion=3", json=bad, headers=lists.coordinator)
        assert refused.status_code == 400 and refused.json()["code"] == code, (bad, refused.text)
    no_conflict = requests.patch(f"{one}?baseVersion=3&resolve=true", headers=lists.coordinator)
    assert no_conflict.status_code == 400 and no_conflict.json()["code"] == "400.32"
    assert requests.get(one, headers=lists.coordinator).json()["currentVersion"]["version"] == 3

    versions = requests.get(f"{one}/versions", headers=lists.analyst).json()
    assert [(v["version"], v["baseVersion"], v["current"]) for v in versions] == [
        (1, None, False),
        (2, 1, False),
        (3, 2, True),
    ]
    assert [v["label"] for v in versions] == ["Vahdat", "Vahdat", "Vahdat (2)"]
    assert versions[1]["data"] == {"district": "Vahdat", "status": "in plan"}
    assert versions[1]["serverDiff"] == ["status"] and versions[2]["baseDiff"] == ["label"]
    assert [v["conflict"] for v in versions] == [None, None, None] and versions[2]["lastGoodVersion"] is True
    assert all(v["creatorId"] == lists.coordinator_id and ISO_Z.match(v["createdAt"]) for v in versions)


def test_delete_is_soft_and_hides_the_entity(lists: Lists) -> None:
    base = lists.new_list("deletions", "district")
    kept = _create(lists, base, {"label": "kept", "data": {"district": "A"}})
    gone = _create(lists, base, {"label": "gone", "data": {"district": "B"}})
    one = f"{base}/entities/{gone['uuid']}"
    assert requests.delete(one, headers=lists.analyst).status_code == 403
    deleted = requests.delete(one, headers=lists.coordinator, timeout=10)
    assert deleted.json() == {"success": True}
    assert requests.get(one, headers=lists.coordinator).status_code == 404
    assert requests.delete(one, headers=lists.coordinator).status_code == 404
    assert (
        requests.patch(f"{one}?force=true", json={"label": "x"}, headers=lists.coordinator).status_code == 404
    )
    assert [e["uuid"] for e in requests.get(f"{base}/entities", headers=lists.coordinator).json()] == [
        kept["uuid"]
    ]
    feed = requests.get(f"{base}.svc/Entities", headers=lists.coordinator).json()
    assert [r["__id"] for r in feed["value"]] == [kept["uuid"]]
    with_deleted = requests.get(
        f"{base}.svc/Entities", params={"$filter": "__system/deletedAt ne null"}, headers=lists.coordinator
    ).json()
    assert [r["__id"] for r in with_deleted["value"]] == [gone["uuid"]]
    assert ISO_Z.match(with_deleted["value"][0]["__system"]["deletedAt"])
    csv_ids = [
        r["__id"]
        for r in csv.DictReader(
            io.StringIO(requests.get(f"{base}/entities.csv", headers=lists.coordinator).text)
        )
    ]
    assert csv_ids == [kept["uuid"]]
    reuse = requests.post(
        f"{base}/entities", json={"uuid": gone["uuid"], "label": "again"}, headers=lists.coordinator
    )
    assert reuse.status_code == 409  # a deleted entity keeps its UUID
    with lists.live.database.read() as session:
        row = session.scalar(select(Entity).where(Entity.uuid == gone["uuid"]))
        assert row is not None and row.deleted_at is not None and len(row.versions) == 1


def test_csv_as_central(lists: Lists) -> None:
    base = lists.new_list("csv_list", "district", "reported.date")
    made = _create(lists, base, {"label": 'Label, with "quotes"', "data": {"district": "Hisor"}})
    requests.patch(
        f"{base}/entities/{made['uuid']}?baseVersion=1",
        json={"data": {"reported.date": "2026-12-01"}},
        headers=lists.coordinator,
    )
    got = requests.get(f"{base}/entities.csv", headers=lists.analyst, timeout=10)
    assert got.status_code == 200 and got.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0] == [
        "__id", "label", "district", "reported.date", "__createdAt", "__creatorId", "__creatorName",
        "__updates", "__updatedAt", "__version",
    ]  # fmt: skip
    (row,) = rows[1:]
    assert row[:4] == [made["uuid"], 'Label, with "quotes"', "Hisor", "2026-12-01"]
    assert ISO_Z.match(row[4]) and row[5] == str(lists.coordinator_id) and row[6]
    assert row[7] == "1" and ISO_Z.match(row[8]) and row[9] == "2"
    empty = lists.new_list("csv_empty", "p")
    assert (
        requests.get(f"{empty}/entities.csv", headers=lists.analyst).text
        == "__id,label,p,__createdAt,__creatorId,__creatorName,__updates,__updatedAt,__version\n"
    )


def test_odata_as_central(lists: Lists) -> None:
    base = lists.new_list("plans", "district", "grant.amount")
    made = [
        _create(lists, base, {"label": f"plan {i}", "data": {"district": d, "grant.amount": str(i * 100)}})
        for i, d in enumerate(["Vahdat", "Rudaki", "Vahdat", "Hisor"], start=1)
    ]
    requests.patch(
        f"{base}/entities/{made[0]['uuid']}?baseVersion=1",
        json={"label": "plan 1b"},
        headers=lists.coordinator,
    )

    doc = requests.get(f"{base}.svc", headers=lists.analyst, timeout=10)
    assert doc.status_code == 200 and doc.headers["OData-Version"] == "4.0"
    assert doc.json()["value"] == [{"name": "Entities", "kind": "EntitySet", "url": "Entities"}]
    assert doc.json()["@odata.context"].endswith("/datasets/plans.svc/$metadata")
    meta = requests.get(f"{base}.svc/$metadata", headers=lists.analyst, timeout=10)
    assert meta.headers["Content-Type"].startswith("application/xml")
    assert '<Property Name="grant_amount" Type="Edm.String"/>' in meta.text
    assert '<EntityContainer Name="plans">' in meta.text

    feed = requests.get(f"{base}.svc/Entities", headers=lists.analyst, timeout=10).json()
    assert feed["@odata.context"].endswith("/datasets/plans.svc/$metadata#Entities")
    assert [r["label"] for r in feed["value"]] == ["plan 4", "plan 3", "plan 2", "plan 1b"]
    first = feed["value"][-1]
    assert set(first) == {"__id", "label", "__system", "district", "grant_amount"}
    assert first["__system"]["version"] == 2 and first["__system"]["updates"] == 1
    assert (
        first["__system"]["creatorId"] == str(lists.coordinator_id) and first["__system"]["conflict"] is None
    )

    def ask(**params: str) -> dict[str, Any]:
        got = requests.get(f"{base}.svc/Entities", params=params, headers=lists.analyst, timeout=10)
        assert got.status_code == 200, got.text
        return got.json()  # type: ignore[no-any-return]

    assert ask(**{"$select": "__id"})["value"][0] == {"__id": made[3]["uuid"]}
    assert ask(**{"$select": "label,__system/version,grant_amount"})["value"][-1] == {
        "label": "plan 1b", "__system": {"version": 2}, "grant_amount": "100",
    }  # fmt: skip
    vahdat = ask(**{"$filter": "district eq 'Vahdat'", "$count": "true"})
    assert [r["label"] for r in vahdat["value"]] == ["plan 3", "plan 1b"] and vahdat["@odata.count"] == 2
    assert [r["label"] for r in ask(**{"$filter": "__system/version gt 1"})["value"]] == ["plan 1b"]
    assert len(ask(**{"$filter": f"__id eq '{made[1]['uuid']}'"})["value"]) == 1
    assert len(ask(**{"$filter": f"__system/creatorId eq {lists.coordinator_id}"})["value"]) == 4
    assert len(ask(**{"$filter": "__system/createdAt lt 2000-01-01"})["value"]) == 0

    page = ask(**{"$top": "2", "$skip": "1", "$count": "True"})
    assert [r["label"] for r in page["value"]] == ["plan 3", "plan 2"] and page["@odata.count"] == 4
    following = requests.get(page["@odata.nextLink"], headers=lists.analyst, timeout=10).json()
    assert [r["label"] for r in following["value"]] == ["plan 1b"] and "@odata.nextLink" not in following

    for params, code in (
        ({"$select": "nope"}, "400.23"),
        ({"$filter": "nope eq 1"}, "400.19"),
        ({"$filter": "district eq"}, "400.18"),
        ({"$top": "-1"}, "400.1"),
    ):
        refused = requests.get(f"{base}.svc/Entities", params=params, headers=lists.analyst, timeout=10)
        assert refused.status_code == 400 and refused.json()["code"] == code, (params, refused.text)
    assert requests.get(f"{lists.url}/nothing.svc/Entities", headers=lists.analyst).status_code == 404


def test_roles_and_audit(lists: Lists) -> None:
    base = lists.new_list("guarded_entities", "district")
    denied = requests.post(f"{base}/entities", json={"label": "x"}, headers=lists.analyst, timeout=10)
    assert denied.status_code == 403
    made = _create(lists, base, {"label": "x"})
    one = f"{base}/entities/{made['uuid']}"
    assert requests.patch(f"{one}?force=true", json={"label": "y"}, headers=lists.analyst).status_code == 403
    for path in (
        "/entities",
        f"/entities/{made['uuid']}",
        f"/entities/{made['uuid']}/versions",
        "/entities.csv",
        ".svc",
        ".svc/$metadata",
        ".svc/Entities",
    ):
        assert requests.get(f"{base}{path}", headers=lists.outsider, timeout=10).status_code == 403, path
        assert requests.get(f"{base}{path}", timeout=10).status_code == 401, path
    requests.patch(f"{one}?baseVersion=1", json={"label": "y"}, headers=lists.coordinator)
    requests.delete(one, headers=lists.coordinator)
    with lists.live.database.read() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.target_type == "entity", AuditEvent.target_id == made["uuid"])
            .order_by(AuditEvent.id)
        ).all()
    assert [(e.action, e.actor_user_id, e.details["version"]) for e in events] == [
        ("entity.create", lists.coordinator_id, 1),
        ("entity.update.version", lists.coordinator_id, 2),
        ("entity.delete", lists.coordinator_id, 2),
    ]
    assert all(e.project_id == lists.project and e.details["dataset"] == "guarded_entities" for e in events)


def test_conflict_shown_in_versions_and_resolved(lists: Lists) -> None:
    """An update made against an older version (as offline updates from submissions will be) is a
    conflict: the versions say which, the list counts it, and ``?resolve=true`` settles it."""
    base = lists.new_list("conflicts", "status")
    made = _create(lists, base, {"label": "concern", "data": {"status": "open"}})
    one = f"{base}/entities/{made['uuid']}"
    requests.patch(f"{one}?baseVersion=1", json={"data": {"status": "in plan"}}, headers=lists.coordinator)
    with lists.live.database.write() as w:  # a second change made against version 1, arriving later
        entity = w.session.scalar(select(Entity).where(Entity.uuid == made["uuid"]))
        assert entity is not None
        entity.version, entity.conflict, entity.data = 3, "hard", {"status": "resolved"}
        entity.versions.append(
            EntityVersion(
                version=3,
                base_version=1,
                label="concern",
                data={"status": "resolved"},
                data_received={"status": "resolved"},
                conflicting_properties=["status"],
                created_by_id=lists.coordinator_id,
            )
        )
    versions = requests.get(f"{one}/versions", headers=lists.analyst).json()
    assert [(v["conflict"], v["resolved"], v["lastGoodVersion"]) for v in versions] == [
        (None, False, False),
        (None, False, True),
        ("hard", False, False),
    ]
    assert versions[2]["baseDiff"] == ["status"] and versions[2]["serverDiff"] == ["status"]
    assert [v["relevantToConflict"] for v in versions] == [False, True, True]
    relevant = requests.get(f"{one}/versions?relevantToConflict=true", headers=lists.analyst).json()
    assert [v["version"] for v in relevant] == [2, 3]
    summary = requests.get(lists.url, headers={**lists.analyst, "X-Extended-Metadata": "true"}).json()
    assert next(s for s in summary if s["name"] == "conflicts")["conflicts"] == 1
    assert requests.get(one, headers=lists.analyst).json()["conflict"] == "hard"

    stale = requests.patch(f"{one}?baseVersion=2&resolve=true", headers=lists.coordinator)
    assert stale.status_code == 409 and stale.json()["code"] == "409.15"
    resolved = requests.patch(f"{one}?baseVersion=3&resolve=true", headers=lists.coordinator)
    assert resolved.status_code == 200 and resolved.json()["conflict"] is None, resolved.text
    assert resolved.json()["currentVersion"]["version"] == 3  # resolving alone makes no version
    versions = requests.get(f"{one}/versions", headers=lists.analyst).json()
    assert versions[2]["resolved"] is True and versions[2]["lastGoodVersion"] is True
    with lists.live.database.read() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target_id == made["uuid"]).order_by(AuditEvent.id)
        ).all()
    assert actions[-1] == "entity.update.resolve"


def test_concurrent_updates_on_one_version_one_wins(lists: Lists) -> None:
    """Two clients update the same version at once: one gets version 2, the other 409.15, none is lost."""
    base = lists.new_list("races", "status")
    made = _create(lists, base, {"label": "race", "data": {"status": "open"}})
    one = f"{base}/entities/{made['uuid']}"
    barrier = threading.Barrier(4)

    def update(value: str) -> int:
        barrier.wait()
        return requests.patch(
            f"{one}?baseVersion=1", json={"data": {"status": value}}, headers=lists.coordinator, timeout=30
        ).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(update, ["a", "b", "c", "d"]))
    assert codes == [200, 409, 409, 409]
    versions = requests.get(f"{one}/versions", headers=lists.coordinator).json()
    assert [v["version"] for v in versions] == [1, 2]


def test_deleted_entities_listed_and_restored(lists: Lists) -> None:
    base = lists.new_list("trash", "status")
    made = _create(lists, base, {"label": "kept in trash", "data": {"status": "open"}})
    one = f"{base}/entities/{made['uuid']}"
    assert requests.post(f"{one}/restore", headers=lists.coordinator).status_code == 404  # not deleted
    requests.delete(one, headers=lists.coordinator)
    trash = requests.get(f"{base}/entities?deleted=true", headers=lists.analyst).json()
    assert [e["uuid"] for e in trash] == [made["uuid"]] and ISO_Z.match(trash[0]["deletedAt"])
    assert requests.get(f"{one}?deleted=true", headers=lists.analyst).json()["currentVersion"]["data"] == {
        "status": "open"
    }
    assert requests.post(f"{one}/restore", headers=lists.analyst).status_code == 403
    restored = requests.post(f"{one}/restore", headers=lists.coordinator)
    assert restored.json() == {"success": True}, restored.text
    back = requests.get(one, headers=lists.analyst).json()
    assert back["deletedAt"] is None and back["currentVersion"]["version"] == 1
    assert requests.get(f"{base}/entities?deleted=true", headers=lists.analyst).json() == []
    with lists.live.database.read() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target_id == made["uuid"]).order_by(AuditEvent.id)
        ).all()
    assert actions == ["entity.create", "entity.delete", "entity.restore"]


def test_many_entities_in_one_upload(lists: Lists) -> None:
    base = lists.new_list("many", "n")
    rows = [{"label": f"row {i}", "data": {"n": str(i)}} for i in range(3000)]
    made = requests.post(
        f"{base}/entities", json={"entities": rows, "source": {"name": "many.csv"}}, headers=lists.coordinator
    )
    assert made.json() == {"success": True}, made.text
    assert len(requests.get(f"{base}/entities", headers=lists.analyst, timeout=60).json()) == 3000
    feed = requests.get(
        f"{base}.svc/Entities", params={"$top": "10", "$count": "true"}, headers=lists.analyst, timeout=60
    ).json()
    assert len(feed["value"]) == 10 and feed["@odata.count"] == 3000
    csv_rows = list(csv.reader(io.StringIO(requests.get(f"{base}/entities.csv", headers=lists.analyst).text)))
    assert len(csv_rows) == 3001 and sorted(int(r[2]) for r in csv_rows[1:]) == list(range(3000))


def test_odata_next_link_of_a_list_named_in_cyrillic(lists: Lists) -> None:
    base = lists.new_list("Жалобы", "ноҳия")
    for i in range(3):
        _create(lists, base, {"label": f"ҷамоат {i}", "data": {"ноҳия": "Ваҳдат"}})
    page = requests.get(
        f"{base}.svc/Entities", params={"$top": "2"}, headers=lists.analyst, timeout=10
    ).json()
    link = page["@odata.nextLink"]
    assert link.isascii() and "/datasets/%D0%96%D0%B0%D0%BB%D0%BE%D0%B1%D1%8B.svc/Entities?" in link
    rest = requests.get(link, headers=lists.analyst, timeout=10).json()
    assert [r["label"] for r in rest["value"]] == ["ҷамоат 0"] and rest["value"][0][
        odata_name("ноҳия")
    ] == "Ваҳдат"
