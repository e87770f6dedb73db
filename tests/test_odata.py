"""OData v4 at ``.../forms/{f}.svc`` over real HTTP, and the ``$filter`` language on its own.

The form (tests/test_submissions_api.py) has personal fields (a name, a phone number, an ID-card photo),
typed fields, a group, a repeat with a nested repeat and a geopoint; a test app user's submission must
never appear.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from lxml import etree
from sqlalchemy import select

from server.datasets import odata_filter as of
from server.datasets.redact import pseudonym
from server.errors import Problem
from server.models import AuditEvent, Form
from tests.conftest import FORMS_DIR
from tests.datasets_fixtures import generated_instance, make_project, publish_file, submit, web_user
from tests.test_submissions_api import DEVICE, Survey, make_survey

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
EDM_DATA = "{http://docs.oasis-open.org/odata/ns/edmx}DataServices"


@pytest.fixture(scope="module")
def survey(live_server: Any) -> Iterator[Survey]:
    yield make_survey(live_server, "odata")


def rows(survey: Survey, table: str = "Submissions", who: str = "admin", **params: Any) -> dict[str, Any]:
    reply = survey.get(f".svc/{table}", who=who, params=params)
    assert reply.status_code == 200, reply.text
    assert reply.headers["OData-Version"] == "4.0"
    return reply.json()  # type: ignore[no-any-return]


def ids(body: dict[str, Any]) -> list[str]:
    return [r["__id"] for r in body["value"]]


# ---- $filter, on its own -------------------------------------------------------------------------------

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
VALUES: dict[str, Any] = {
    "__system/submissionDate": NOW,
    "__system/reviewState": None,
    "age": 30,
    "name": "O'Neil",
    "score": 2.5,
    "flag": True,
    "empty": None,
}


def check(expr: str) -> bool:
    return of.matches(of.parse(expr), lambda m: VALUES[m.path])


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("age eq 30", True),
        ("age ne 30", False),
        ("age gt 29 and age lt 31", True),
        ("age ge 31 or age le 29", False),
        ("not (age lt 18)", True),
        ("name eq 'O''Neil'", True),
        ("score gt 2", True),
        ("flag eq True", True),
        ("flag eq false", False),
        ("empty eq null", True),
        ("empty ne null", False),
        ("empty gt 3", False),
        ("__system/reviewState eq null", True),
        ("__system/reviewState eq 'received'", True),
        ("__system/reviewState eq 'approved'", False),
        ("__system/submissionDate ge 2026-05-01", True),
        ("__system/submissionDate lt 2026-05-01T12:00:00Z", False),
        ("__system/submissionDate le '2026-05-01T12:00:00.000Z'", True),
        ("__system/submissionDate gt 2026-05-01T15:00:00+05:00", True),
        ("year(__system/submissionDate) eq 2026 and month(__system/submissionDate) eq 5", True),
        ("day(__system/submissionDate) eq 1 and hour(__system/submissionDate) eq 12", True),
        ("__system/submissionDate lt now()", True),
        ("contains(name, 'Ne') and startswith(tolower(name), 'o') and endswith(name, 'il')", True),
        ("length(trim(name)) eq 6", True),
        ("(age eq 1 or age eq 30) and (name eq 'x' or score eq 2.5)", True),
        ("age eq 'thirty'", False),
    ],
)
def test_filter_expressions(expr: str, expected: bool) -> None:
    assert check(expr) is expected


@pytest.mark.parametrize(
    ("expr", "code"),
    [
        ("age eq", "400.18"),
        ("age eq 1 and", "400.18"),
        ("(age eq 1", "400.18"),
        ("age eq 'unterminated", "400.18"),
        ("age @ 1", "400.18"),
        ("$it/age eq 1", "400.18"),
        ("", "400.18"),
        ("substringof('a', name)", "501.4"),
        ("year(__system/submissionDate, 1) eq 2", "400.18"),
        ("(" * 100 + "age eq 1" + ")" * 100, "400.18"),
    ],
)
def test_filter_errors_have_stable_codes(expr: str, code: str) -> None:
    with pytest.raises(Problem) as caught:
        of.parse(expr)
    assert caught.value.code == code


def test_pushdown_takes_only_exact_top_level_terms() -> None:
    full = of.pushdown(
        of.parse("__system/submissionDate ge 2026-01-01 and __system/reviewState eq 'approved'")
    )
    assert len(full.clauses) == 2 and full.complete
    partial = of.pushdown(of.parse("__system/submissionDate ge 2026-01-01 and age gt 3"))
    assert len(partial.clauses) == 1 and not partial.complete
    either = of.pushdown(of.parse("__system/submissionDate ge 2026-01-01 or age gt 3"))
    assert either.clauses == [] and not either.complete
    on_repeat = of.pushdown(of.parse("__system/reviewState eq null"), on_root=False)
    assert on_repeat.clauses == []
    rooted = of.pushdown(of.parse("$root/Submissions/__system/reviewState eq null"), on_root=False)
    assert len(rooted.clauses) == 1


# ---- service document and $metadata ------------------------------------------------------------------


def test_service_document(survey: Survey) -> None:
    reply = survey.get(".svc")
    assert reply.status_code == 200
    assert reply.headers["OData-Version"] == "4.0"
    body = reply.json()
    assert body["@odata.context"] == survey.form_url(".svc/$metadata")
    assert body["value"] == [
        {"name": "Submissions", "kind": "EntitySet", "url": "Submissions"},
        {"name": "Submissions.visit", "kind": "EntitySet", "url": "Submissions.visit"},
        {"name": "Submissions.visit.person", "kind": "EntitySet", "url": "Submissions.visit.person"},
    ]


def _properties(doc: etree._Element, entity: str) -> dict[str, str]:
    found = doc.find(f".//{EDM}EntityType[@Name='{entity}']")
    assert found is not None, entity
    return {p.get("Name"): p.get("Type") for p in found if p.get("Name")}  # type: ignore[misc]


def test_metadata_is_edmx_with_types_per_role(survey: Survey) -> None:
    reply = survey.get(".svc/$metadata")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/xml")
    doc = etree.fromstring(reply.content)
    assert doc.get("Version") == "4.0"
    root = _properties(doc, "Submissions")
    assert root["__id"] == "Edm.String"
    assert root["__system"] == "org.opendatakit.submission.metadata"
    assert root["age"] == "Edm.Int64" and root["score"] == "Edm.Decimal" and root["seen"] == "Edm.Date"
    assert root["where"] == "Edm.GeographyPoint"
    assert root["phone"] == "Edm.Int64"
    assert root["grp"] == "org.opendatakit.user.survey1.grp"
    assert root["visit"] == "Collection(org.opendatakit.user.survey1.Submissions.visit)"
    visit = _properties(doc, "Submissions.visit")
    assert visit["__Submissions-id"] == "Edm.String"
    assert visit["person"] == "Collection(org.opendatakit.user.survey1.Submissions.visit.person)"
    assert _properties(doc, "Submissions.visit.person")["__Submissions-visit-id"] == "Edm.String"
    group = doc.find(f".//{EDM}ComplexType[@Name='grp']")
    assert group is not None and [p.get("Name") for p in group] == ["note", "photo"]
    sets = [s.get("Name") for s in doc.iter(f"{EDM}EntitySet")]
    assert sets == ["Submissions", "Submissions.visit", "Submissions.visit.person"]
    # An analyst gets pseudonyms for a personal number: text, not a number.
    analyst = etree.fromstring(survey.get(".svc/$metadata", who="analyst").content)
    assert _properties(analyst, "Submissions")["phone"] == "Edm.String"


# ---- rows --------------------------------------------------------------------------------------------


def test_submission_rows_are_typed_and_streamed(survey: Survey) -> None:
    reply = survey.get(".svc/Submissions")
    assert "Content-Length" not in reply.headers  # streamed, not built whole in memory
    body = reply.json()
    assert body["@odata.context"] == survey.form_url(".svc/$metadata#Submissions")
    # newest first, as Central; the test app user's is left out
    assert ids(body) == ["uuid:s-3", "uuid:s-2", "uuid:s-1"]
    first, second = body["value"][2], body["value"][1]
    system = first["__system"]
    assert list(system) == [
        "submissionDate", "updatedAt", "submitterId", "submitterName", "attachmentsPresent",
        "attachmentsExpected", "status", "reviewState", "deviceId", "edits", "formVersion", "deletedAt",
    ]  # fmt: skip
    assert system["submitterName"] == "Facilitator Nodira" and isinstance(system["submitterId"], str)
    assert (system["attachmentsPresent"], system["attachmentsExpected"]) == (2, 2)
    assert (system["reviewState"], system["deviceId"], system["edits"], system["formVersion"]) == (
        None, DEVICE, 0, "1",
    )  # fmt: skip
    assert system["submissionDate"].endswith("Z")
    assert first["respondent"] == "Alice" and first["phone"] == 900123 and first["age"] == 30
    assert first["score"] == 1.5 and first["seen"] == "2026-01-05" and first["many"] == "yes no"
    assert first["where"] == {
        "type": "Point",
        "coordinates": [68.7734, 38.5612, 800.0],
        "properties": {"accuracy": 5.0},
    }
    assert first["grp"] == {"note": "first", "photo": "p1.jpg"}
    assert first["meta"] == {"instanceID": "uuid:s-1"}
    assert first["visit@odata.navigationLink"] == "Submissions('uuid:s-1')/visit"
    assert "visit" not in first
    # Unanswered questions are present as null, groups as objects of nulls.
    assert (
        second["score"] is None
        and second["where"] is None
        and second["grp"] == {"note": "second", "photo": None}
    )


def test_wkt(survey: Survey) -> None:
    body = rows(survey, **{"$wkt": "True", "$select": "where"})
    assert [r["where"] for r in body["value"]] == ["POINT (69.8 37.9)", None, "POINT (68.7734 38.5612 800)"]


def test_analyst_rows_are_redacted_and_filters_see_only_pseudonyms(survey: Survey) -> None:
    first = rows(survey, who="analyst")["value"][-1]
    assert first["respondent"] == pseudonym(survey.key, "Alice")
    assert first["phone"] == pseudonym(survey.key, "900123")
    assert first["idcard"] is None
    assert first["age"] == 30 and first["grp"]["photo"] == "p1.jpg"
    assert first["__system"]["deviceId"] == pseudonym(survey.key, DEVICE)
    assert first["__system"]["submitterName"] == pseudonym(survey.key, "Facilitator Nodira")
    assert rows(survey, who="analyst", **{"$filter": "respondent eq 'Alice'"})["value"] == []
    by_pseudonym = rows(
        survey, who="analyst", **{"$filter": f"respondent eq '{pseudonym(survey.key, 'Alice')}'"}
    )
    assert ids(by_pseudonym) == ["uuid:s-1"]
    assert ids(rows(survey, **{"$filter": "respondent eq 'Alice'"})) == ["uuid:s-1"]


def test_repeat_tables_and_expand(survey: Survey) -> None:
    visits = rows(survey, "Submissions.visit")["value"]
    # repeat rows follow their submissions, newest first, and keep their own order within one
    assert [(v["place"], v["__Submissions-id"]) for v in visits] == [
        ("Kulob", "uuid:s-3"),
        ("Dushanbe", "uuid:s-1"),
        ("Khujand", "uuid:s-1"),
    ]
    assert len({v["__id"] for v in visits}) == 3
    people = rows(survey, "Submissions.visit.person")["value"]
    assert [p["years"] for p in people] == [70, 40, 41]
    assert [p["__Submissions-visit-id"] for p in people] == [
        visits[0]["__id"],
        visits[1]["__id"],
        visits[1]["__id"],
    ]
    expanded = rows(survey, **{"$expand": "*", "$select": "__id,visit"})["value"][-1]
    assert [v["place"] for v in expanded["visit"]] == ["Dushanbe", "Khujand"]
    assert [p["years"] for p in expanded["visit"][0]["person"]] == [40, 41]
    assert expanded["visit"][0]["__id"] == visits[1]["__id"]
    bad = survey.get(".svc/Submissions", params={"$expand": "visit"})
    assert bad.status_code == 400


def test_navigation_links_lead_to_the_rows(survey: Survey) -> None:
    root = survey.form_url(".svc/")
    first = rows(survey)["value"][-1]
    visits = requests.get(
        urljoin(root, first["visit@odata.navigationLink"]), headers=survey.users["admin"].headers, timeout=30
    )
    assert visits.status_code == 200, visits.text
    assert [v["place"] for v in visits.json()["value"]] == ["Dushanbe", "Khujand"]
    people = requests.get(
        urljoin(root, visits.json()["value"][0]["person@odata.navigationLink"]),
        headers=survey.users["admin"].headers,
        timeout=30,
    )
    assert [p["years"] for p in people.json()["value"]] == [40, 41]
    single = survey.get(".svc/Submissions('uuid:s-3')")
    assert ids(single.json()) == ["uuid:s-3"]
    assert survey.get(".svc/Submissions('uuid:nope')").status_code == 404


# ---- paging -------------------------------------------------------------------------------------------


def _follow(
    survey: Survey, table: str, params: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[int | None]]:
    body = rows(survey, table, **params)
    got, counts = list(body["value"]), [body.get("@odata.count")]
    while "@odata.nextLink" in body:
        reply = requests.get(body["@odata.nextLink"], headers=survey.users["admin"].headers, timeout=30)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        got += body["value"]
        counts.append(body.get("@odata.count"))
    return got, counts


@pytest.mark.parametrize(
    ("table", "params", "expected_pages"),
    [
        ("Submissions", {"$top": 1, "$count": "true"}, 3),
        ("Submissions", {"$top": 2}, 2),
        ("Submissions", {"$top": 1, "$filter": "age gt 20", "$count": "True"}, 2),
        ("Submissions", {"$top": 1, "$orderby": "__system/submissionDate desc"}, 3),
        ("Submissions", {"$top": 2, "$orderby": "__id desc", "$filter": "age gt 1", "$count": "true"}, 2),
        ("Submissions", {"$top": 1, "$skip": 1, "$filter": "age gt 1"}, 2),
        ("Submissions.visit", {"$top": 1, "$count": "true"}, 3),
        ("Submissions.visit.person", {"$top": 2}, 2),
    ],
)
def test_next_links_page_through_every_row_once(
    survey: Survey, table: str, params: dict[str, Any], expected_pages: int
) -> None:
    everything = rows(survey, table, **{k: v for k, v in params.items() if k != "$top"})["value"]
    paged, counts = _follow(survey, table, params)
    assert [r["__id"] for r in paged] == [r["__id"] for r in everything]
    assert len(counts) == expected_pages
    if "$count" in params:
        assert set(counts) == {len(everything)}


def test_top_skip_count_and_order(survey: Survey) -> None:
    assert ids(rows(survey, **{"$skip": 1})) == ["uuid:s-2", "uuid:s-1"]
    page = rows(survey, **{"$skip": 1, "$top": 1, "$count": "TRUE"})
    assert ids(page) == ["uuid:s-2"] and page["@odata.count"] == 3 and "@odata.nextLink" in page
    last = rows(survey, **{"$skip": 2, "$top": 5})
    assert ids(last) == ["uuid:s-1"] and "@odata.nextLink" not in last
    assert rows(survey, **{"$top": 0})["value"] == []
    newest = rows(survey, **{"$orderby": "__system/submissionDate desc", "$select": "__id"})
    assert ids(newest) == ["uuid:s-3", "uuid:s-2", "uuid:s-1"]
    assert survey.get(".svc/Submissions", params={"$orderby": "age"}).status_code == 400


# ---- $filter and $select over HTTP -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("age gt 20", ["uuid:s-3", "uuid:s-1"]),
        ("not (age gt 20)", ["uuid:s-2"]),
        ("age ge 17 and score eq null", ["uuid:s-2"]),
        ("where ne null and year(__system/submissionDate) ge 2000", ["uuid:s-3", "uuid:s-1"]),
        ("__system/submissionDate lt 2000-01-01", []),
        (
            "__system/submissionDate ge 2000-01-01T00:00:00Z and __system/reviewState eq null",
            ["uuid:s-3", "uuid:s-2", "uuid:s-1"],
        ),
        ("__system/reviewState eq 'approved'", []),
        ("seen eq 2026-01-05", ["uuid:s-1"]),
        ("grp/note eq 'second'", ["uuid:s-2"]),
        ("contains(respondent, 'aro')", ["uuid:s-3"]),
        ("__id eq 'uuid:s-2' or __system/submitterName eq 'nobody'", ["uuid:s-2"]),
        ("__system/attachmentsPresent gt 0", ["uuid:s-1"]),
    ],
)
def test_filter_over_http(survey: Survey, expr: str, expected: list[str]) -> None:
    body = rows(survey, **{"$filter": expr, "$count": "true"})
    assert ids(body) == expected
    assert body["@odata.count"] == len(expected)


def test_filter_on_repeat_tables(survey: Survey) -> None:
    assert [
        v["place"]
        for v in rows(survey, "Submissions.visit", **{"$filter": "$root/Submissions/age gt 40"})["value"]
    ] == ["Kulob"]
    assert [
        v["place"] for v in rows(survey, "Submissions.visit", **{"$filter": "place ne 'Kulob'"})["value"]
    ] == ["Dushanbe", "Khujand"]
    assert [
        p["years"] for p in rows(survey, "Submissions.visit.person", **{"$filter": "years lt 41"})["value"]
    ] == [40]


def test_review_state_filter_includes_rejected(survey: Survey) -> None:
    url = survey.form_url("/submissions/uuid:s-2")
    coordinator = survey.users["coordinator"].headers
    assert (
        requests.patch(url, json={"reviewState": "rejected"}, headers=coordinator, timeout=30).status_code
        == 200
    )
    try:
        rejected = rows(survey, **{"$filter": "__system/reviewState eq 'rejected'"})
        assert ids(rejected) == ["uuid:s-2"]
        assert rejected["value"][0]["__system"]["reviewState"] == "rejected"
        assert ids(rows(survey, **{"$filter": "__system/reviewState ne 'rejected'"})) == [
            "uuid:s-3",
            "uuid:s-1",
        ]
        assert rows(survey, **{"$filter": "__system/updatedAt ne null"})["value"][0]["__id"] == "uuid:s-2"
    finally:
        requests.patch(url, json={"reviewState": "received"}, headers=coordinator, timeout=30)


def test_select(survey: Survey) -> None:
    first = rows(survey, **{"$select": "__id,age,grp/note,__system/reviewState"})["value"][-1]
    assert first == {
        "__id": "uuid:s-1",
        "__system": {"reviewState": None},
        "age": 30,
        "grp": {"note": "first"},
    }
    assert rows(survey, **{"$select": "age"})["value"][1] == {"age": 17}
    assert rows(survey, **{"$select": "*"})["value"] == rows(survey)["value"]
    system = rows(survey, **{"$select": "__system"})["value"][0]
    assert list(system) == ["__system"] and len(system["__system"]) == 12
    visit = rows(survey, "Submissions.visit", **{"$select": "place,__Submissions-id"})["value"][1]
    assert visit == {"__Submissions-id": "uuid:s-1", "place": "Dushanbe"}
    unknown = survey.get(".svc/Submissions", params={"$select": "age,nope"})
    assert unknown.status_code == 400 and unknown.json()["code"] == "400.19"


# ---- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        (".svc/Submissions", {"$filter": "age eq"}, 400, "400.18"),
        (".svc/Submissions", {"$filter": "nope eq 1"}, 400, "400.19"),
        (".svc/Submissions", {"$filter": "substringof('a', respondent)"}, 501, "501.4"),
        (".svc/Submissions", {"$skiptoken": "garbage"}, 400, "400.20"),
        (".svc/Submissions", {"$skiptoken": "01e30"}, 400, "400.20"),
        (".svc/Submissions", {"$top": "ten"}, 400, "400.1"),
        (".svc/Submissions", {"$skip": "-1"}, 400, "400.1"),
        # Beyond the database's integers (the token says {"o": 10**20}): refused before a page starts
        # streaming, not cut in its middle.
        (".svc/Submissions", {"$top": "99999999999999999999"}, 400, "400.1"),
        (".svc/Submissions", {"$skip": "99999999999999999999"}, 400, "400.1"),
        (".svc/Submissions", {"$skiptoken": "01eyJvIjoxMDAwMDAwMDAwMDAwMDAwMDAwMDB9"}, 400, "400.20"),
        (".svc/Submissions.nope", {}, 404, "404.1"),
        (".svc/Submissions('uuid:s-1')/nope", {}, 404, "404.1"),
        (".svc/Submissions.visit", {"$orderby": "__id"}, 400, "400.1"),
    ],
)
def test_errors_are_json_with_stable_codes(
    survey: Survey, path: str, params: dict[str, str], status: int, code: str
) -> None:
    reply = survey.get(path, params=params)
    assert reply.status_code == status, reply.text
    assert reply.json()["code"] == code
    assert reply.json()["message"]


def test_roles(survey: Survey) -> None:
    assert requests.get(survey.form_url(".svc/Submissions"), timeout=30).status_code == 401
    assert survey.get(".svc/Submissions", who="outsider").status_code == 403
    assert survey.get(".svc/$metadata", who="outsider").status_code == 403


def test_every_read_is_audited_as_an_export(survey: Survey) -> None:
    rows(survey, who="analyst", **{"$filter": "age gt 20", "$top": "1"})
    with survey.live.database.read() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "form.submission.export", AuditEvent.project_id == survey.project)
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None
        assert event.details["format"] == "odata" and event.details["table"] == "Submissions"
        assert event.details["options"] == {"$filter": "age gt 20", "$top": "1"}
        assert event.details["access"] == {"level": "redacted", "role": "analyst"}
        assert event.actor_user_id is not None


# ---- the mission forms: every row matches its $metadata -----------------------------------------------

MISSION_FORMS = ("safety_concerns", "focus_group", "youth_consultation")
MISSION_COUNT = 3
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "Edm.String": (str,),
    "Edm.Int64": (int,),
    "Edm.Decimal": (int, float),
    "Edm.Boolean": (bool,),
    "Edm.Date": (str,),
    "Edm.DateTimeOffset": (str,),
    "Edm.GeographyPoint": (dict,),
    "Edm.GeographyLineString": (dict,),
    "Edm.GeographyPolygon": (dict,),
}


@pytest.fixture(scope="module")
def mission(live_server: Any) -> dict[str, Any]:
    db, app = live_server.database, live_server.app
    project_id = make_project(db, "odata-mission")
    media = {p.name: p.read_bytes() for p in FORMS_DIR.glob("*.csv")}
    for name in MISSION_FORMS:
        form_pk = publish_file(db, app, project_id, FORMS_DIR / f"{name}.xlsx")
        with db.read() as session:
            form = session.get(Form, form_pk)
            assert form is not None and form.current_version is not None
            instances = [
                generated_instance(form.current_version, n, media) for n in range(1, MISSION_COUNT + 1)
            ]
        for xml, _, files in instances:
            submit(db, app, project_id, xml, files)
    users = {
        role: web_user(live_server, f"mission-{role}@example.tj", role, project_id)
        for role in ("admin", "analyst")
    }
    return {"url": live_server.url, "project": project_id, "users": users}


def _check_value(value: Any, edm: str, types: dict[str, dict[str, str]], where: str) -> None:
    if value is None:
        return
    if edm in _JSON_TYPES:
        assert isinstance(value, _JSON_TYPES[edm]) and not (
            edm != "Edm.Boolean" and isinstance(value, bool)
        ), f"{where}: {value!r} is not {edm}"
        if edm == "Edm.Date":
            dt.date.fromisoformat(value)
        return
    assert edm in types, f"{where}: unknown type {edm}"
    assert isinstance(value, dict)
    _check_object(value, types[edm], types, where)


def _check_object(
    row: dict[str, Any], declared: dict[str, str], types: dict[str, dict[str, str]], where: str
) -> None:
    keys = {k for k in row if "@odata." not in k}
    plain = {k for k, t in declared.items() if not t.startswith("Collection(")}
    assert keys == plain, f"{where}: row keys {sorted(keys ^ plain)} differ from $metadata"
    for key in keys:
        if key != "__system":
            _check_value(row[key], declared[key], types, f"{where}/{key}")


@pytest.mark.parametrize("who", ["admin", "analyst"])
@pytest.mark.parametrize("name", MISSION_FORMS)
def test_mission_form_rows_match_their_metadata(mission: dict[str, Any], name: str, who: str) -> None:
    headers = mission["users"][who].headers
    base = f"{mission['url']}/v1/projects/{mission['project']}/forms/{name}.svc"
    doc = etree.fromstring(requests.get(f"{base}/$metadata", headers=headers, timeout=60).content)
    user_schema = doc.findall(f"{EDM_DATA}/{EDM}Schema")[1]
    namespace = user_schema.get("Namespace")
    types = {  # by qualified name, as properties name their types
        f"{namespace}.{el.get('Name')}": {p.get("Name"): p.get("Type") for p in el if p.get("Type")}
        for el in user_schema
        if el.tag in (f"{EDM}EntityType", f"{EDM}ComplexType")
    }
    tables = [t["name"] for t in requests.get(base, headers=headers, timeout=60).json()["value"]]
    assert tables[0] == "Submissions"
    ids_by_table: dict[str, set[str]] = {}
    for table in tables:
        reply = requests.get(f"{base}/{table}", headers=headers, timeout=60)
        assert reply.status_code == 200, reply.text
        table_rows = reply.json()["value"]
        depth = sum(1 for t in tables[1:] if table == t or table.startswith(t + "."))  # repeats above
        assert len(table_rows) == MISSION_COUNT * 2**depth, table  # the filler answers each repeat twice
        for row in table_rows:
            _check_object(row, types[f"{namespace}.{table}"], types, f"{name}:{table}")
        ids_by_table[table] = {r["__id"] for r in table_rows}
        if depth:
            parent = table.rsplit(".", 1)[0]
            while parent not in ids_by_table:  # a repeat inside a group of a repeat
                parent = parent.rsplit(".", 1)[0]
            key = next(k for k in types[f"{namespace}.{table}"] if k.startswith("__Submissions"))
            assert {r[key] for r in table_rows} <= ids_by_table[parent]
