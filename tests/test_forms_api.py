"""``/v1/projects/{p}/forms`` over real HTTP: uploads, drafts, versions, media, roles, errors."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import select

from server.forms.convert import convert_xlsform
from server.models import AuditEvent
from server.projects import create_project
from server.users import create_user
from tests.conftest import AppEnv, LiveServer, ServerProcess, serve_in_thread
from tests.test_forms_publish import rich_form, simple_form, xlsform

PASSWORD = "correct horse battery"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PYODK_FORM_KEYS = {
    "projectId",
    "xmlFormId",
    "name",
    "version",
    "hash",
    "state",
    "enketoId",
    "keyId",
    "createdAt",
    "updatedAt",
    "publishedAt",
}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@dataclass
class Api:
    url: str
    project: int
    other_project: int
    coordinator: dict[str, str]
    analyst: dict[str, str]

    def forms(self, project: int | None = None) -> str:
        return f"{self.url}/v1/projects/{project or self.project}/forms"

    def upload(
        self,
        body: bytes,
        content_type: str = XLSX,
        publish: bool = True,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return requests.post(
            self.forms(),
            params={"publish": "true"} if publish else None,
            data=body,
            headers={**self.coordinator, "Content-Type": content_type, **(headers or {})},
            timeout=120,
        )

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(f"{self.forms()}{path}", headers=headers or self.coordinator, timeout=30)

    def post(self, path: str, **kwargs: object) -> requests.Response:
        headers = {**self.coordinator, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.post(f"{self.forms()}{path}", headers=headers, timeout=120, **kwargs)  # type: ignore[arg-type]


def _token(url: str, email: str) -> dict[str, str]:
    r = requests.post(f"{url}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(scope="module")
def api(live_server: LiveServer) -> Api:
    with live_server.database.write() as w:
        project = create_project(w.session, "Forms API")
        other = create_project(w.session, "Forms API other")
        create_user(w.session, "coord@forms.example.org", PASSWORD, "coordinator", project)
        create_user(w.session, "analyst@forms.example.org", PASSWORD, "analyst", project)
    url = live_server.url
    return Api(
        url,
        project.id,
        other.id,
        _token(url, "coord@forms.example.org"),
        _token(url, "analyst@forms.example.org"),
    )


def _assert_form_json(body: dict[str, object]) -> None:
    assert set(body) >= PYODK_FORM_KEYS, PYODK_FORM_KEYS - set(body)
    assert body["enketoId"] is None and body["keyId"] is None
    for key in ("createdAt", "updatedAt"):
        assert isinstance(body[key], str) and ISO_Z.match(body[key]), body[key]


def test_publish_xlsx_and_read_it_back_as_pyodk_would(api: Api) -> None:
    r = api.upload(simple_form("household", "2024.1"))
    assert r.status_code == 200, r.text
    body = r.json()
    _assert_form_json(body)
    assert body["outcome"] == "created" and body["xmlFormId"] == "household" and body["version"] == "2024.1"
    assert body["name"] == "Form household" and body["state"] == "open" and ISO_Z.match(body["publishedAt"])

    xml = api.get("/household.xml")
    assert xml.status_code == 200 and xml.headers["Content-Type"].startswith("application/xml")
    assert hashlib.md5(xml.content).hexdigest() == body["hash"]  # the hash is of the exact bytes served
    assert b'id="household"' in xml.content

    listed = api.get("", headers=api.analyst)  # any project role may read
    assert listed.status_code == 200
    entry = next(f for f in listed.json() if f["xmlFormId"] == "household")
    _assert_form_json(entry)
    assert entry["hash"] == body["hash"] and entry["projectId"] == api.project
    one = api.get("/household", headers=api.analyst).json()
    assert one == entry
    versions = api.get("/household/versions").json()
    assert [v["version"] for v in versions] == ["2024.1"]
    assert api.get("/nothing").status_code == 404
    assert api.get("/nothing.xml").json()["code"] == "404.1"


def test_publish_xform_xml_body(api: Api) -> None:
    converted = api.upload(simple_form("from_xml_src", "1"))
    xml = api.get("/from_xml_src.xml").text.replace('id="from_xml_src"', 'id="from_xml"')
    for content_type in ("application/xml", "text/xml"):
        r = api.upload(xml.encode("utf-8"), content_type=content_type)
        assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "already_published"  # the second upload repeated the first
    served = api.get("/from_xml.xml")
    assert served.text == xml and converted.status_code == 200


def test_version_rules_over_http(api: Api) -> None:
    first = api.upload(simple_form("rules", "1"))
    assert first.json()["outcome"] == "created"
    same = api.upload(simple_form("rules", "1"))
    assert same.status_code == 200 and same.json()["outcome"] == "already_published"
    assert "already published" in same.json()["message"]

    changed = api.upload(simple_form("rules", "1", label="Full name"))
    assert changed.status_code == 409 and changed.json()["code"] == "409.6"
    assert "change the version in the settings sheet" in changed.json()["message"]

    newer = api.upload(simple_form("rules", "2", label="Full name"))
    assert newer.status_code == 200 and newer.json()["outcome"] == "published"
    assert api.get("/rules").json()["version"] == "2"
    assert [v["version"] for v in api.get("/rules/versions").json()] == ["2", "1"]
    old = api.get("/rules/versions/1.xml")
    assert old.status_code == 200 and 'version="1"' in old.text and "Full name" not in old.text


def test_draft_flow_with_attachments(api: Api) -> None:
    draft = api.upload(rich_form("1", form_id="drafted"), publish=False)
    assert draft.status_code == 200 and draft.json()["outcome"] == "draft", draft.text
    assert draft.json()["publishedAt"] is None
    assert api.get("/drafted.xml").status_code == 404  # a draft is not served
    assert api.get("/drafted/draft").json()["version"] == "1"

    listing = api.get("/drafted/draft/attachments").json()
    assert {a["name"]: a["exists"] for a in listing} == {
        "logo.png": False,
        "regions.csv": False,
        "districts.csv": False,
        "jamoats.csv": False,
    }
    assert {a["name"]: a["type"] for a in listing}["logo.png"] == "image"
    regions = b"name,label\nkhorog,Khorog\n"
    up = api.post("/drafted/draft/attachments/regions.csv", data=regions)
    assert up.status_code == 200 and up.json()["exists"] is True
    assert api.post("/drafted/draft/attachments/unknown.csv", data=b"x").status_code == 404
    assert api.get("/drafted/draft/attachments/regions.csv").content == regions

    published = api.post("/drafted/draft/publish")
    assert published.status_code == 200, published.text
    body = published.json()
    assert body["outcome"] == "published" and body["success"] is True and ISO_Z.match(body["publishedAt"])
    assert set(body["missingMedia"]) == {"logo.png", "districts.csv", "jamoats.csv"}
    assert any("logo.png" in w for w in body["warnings"])
    attachments = {a["name"]: a for a in api.get("/drafted/attachments").json()}
    assert attachments["regions.csv"]["exists"] and not attachments["logo.png"]["exists"]
    assert attachments["regions.csv"]["hash"] == hashlib.md5(regions).hexdigest()
    assert api.get("/drafted/attachments/regions.csv").content == regions
    assert api.get("/drafted/draft").status_code == 404

    # Missing media of the published version: copy it to a draft (empty body), attach, publish.
    copy = api.post("/drafted/draft")
    assert copy.status_code == 200 and copy.json()["outcome"] == "draft"
    carried = {a["name"]: a["exists"] for a in api.get("/drafted/draft/attachments").json()}
    assert carried["regions.csv"] is True and carried["logo.png"] is False  # carried over
    assert api.post("/drafted/draft/attachments/logo.png", data=b"\x89PNG fake").status_code == 200
    filled = api.post("/drafted/draft/publish").json()
    assert filled["outcome"] == "already_published" and "logo.png" in filled["message"]
    assert api.get("/drafted/attachments/logo.png").content == b"\x89PNG fake"

    # A changed draft under the same version is refused at publish; ?version= renames it.
    changed = api.post(
        "/drafted/draft",
        data=rich_form("1", form_id="drafted", label="Other"),
        headers={"Content-Type": XLSX},
    )
    assert changed.status_code == 200 and changed.json()["outcome"] == "draft"
    refused = api.post("/drafted/draft/publish")
    assert refused.status_code == 409 and refused.json()["code"] == "409.6"
    renamed = api.post("/drafted/draft/publish", params={"version": "1-b"})
    assert renamed.status_code == 200 and renamed.json()["version"] == "1-b", renamed.text
    xml = api.get("/drafted.xml")
    assert 'version="1-b"' in xml.text and hashlib.md5(xml.content).hexdigest() == renamed.json()["hash"]
    assert {a["name"] for a in api.get("/drafted/attachments").json() if a["exists"]} == {
        "regions.csv",
        "logo.png",
    }

    wrong_id = api.post("/drafted/draft", data=simple_form("other_id", "1"), headers={"Content-Type": XLSX})
    assert wrong_id.status_code == 400 and "other_id" in wrong_id.json()["message"]


def test_external_choices_become_itemsets_csv(api: Api) -> None:
    form = xlsform(
        [
            ["type", "name", "label", "choice_filter"],
            ["select_one region", "region", "Region", ""],
            ["select_one_external district", "district", "District", "region=${region}"],
        ],
        {"form_id": "external", "version": "1"},
        [["list_name", "name", "label"], ["region", "gbao", "GBAO"]],
        external_choices=[["list_name", "name", "label", "region"], ["district", "khorog", "Khorog", "gbao"]],
    )
    r = api.upload(form)
    assert r.status_code == 200 and r.json()["missingMedia"] == [], r.text
    itemsets = api.get("/external/attachments/itemsets.csv")
    assert itemsets.status_code == 200 and b"khorog" in itemsets.content
    assert api.post("/external/draft").status_code == 200  # a copy keeps the generated file
    assert {a["name"]: a["exists"] for a in api.get("/external/draft/attachments").json()} == {
        "itemsets.csv": True
    }


def test_form_id_fallback_header(api: Api) -> None:
    no_id = xlsform([["type", "name", "label"], ["text", "q", "Q"]], {"version": "5"})
    r = api.upload(no_id, headers={"X-XlsForm-FormId-Fallback": "from%20header"})
    assert r.status_code == 200, r.text
    assert r.json()["xmlFormId"] == "from header"  # as Central: the header's id exactly, decoded
    bare = api.upload(no_id)  # no header either: pyxform's default id
    assert bare.status_code == 200 and bare.json()["xmlFormId"] == "data"


def test_state_changes_are_audited(api: Api, live_server: LiveServer) -> None:
    api.upload(simple_form("stately", "1"))
    url = f"{api.forms()}/stately"
    assert requests.patch(url, json={"state": "closing"}, headers=api.coordinator, timeout=10).json()[
        "state"
    ] == ("closing")
    assert (
        requests.patch(url, json={"state": "closed"}, headers=api.coordinator, timeout=10).status_code == 200
    )
    bad = requests.patch(url, json={"state": "gone"}, headers=api.coordinator, timeout=10)
    assert bad.status_code == 400 and "state" in bad.json()["details"]["fields"]
    assert requests.patch(url, json={"state": "open"}, headers=api.analyst, timeout=10).status_code == 403
    assert api.get("/stately").json()["state"] == "closed"
    with live_server.database.read() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.target_id == "stately").order_by(AuditEvent.id)
        ).all()
        assert [e.action for e in events] == [
            "form.create",
            "form.update.publish",
            "form.update",
            "form.update",
        ]
        assert events[2].details["after"] == "closing" and events[2].actor_user_id is not None


def test_auth_is_required_and_roles_are_checked(api: Api) -> None:
    body = simple_form("guarded", "1")
    anonymous = requests.post(api.forms(), data=body, headers={"Content-Type": XLSX}, timeout=30)
    assert anonymous.status_code == 401
    assert requests.get(api.forms(), timeout=10).status_code == 401
    analyst = requests.post(api.forms(), data=body, headers={**api.analyst, "Content-Type": XLSX}, timeout=30)
    assert analyst.status_code == 403 and analyst.json()["code"] == "403.1"
    elsewhere = requests.post(
        api.forms(api.other_project), data=body, headers={**api.coordinator, "Content-Type": XLSX}, timeout=30
    )
    assert elsewhere.status_code == 403
    assert api.get("/guarded").status_code == 404  # nothing was stored
    assert requests.get(api.forms(api.other_project), headers=api.analyst, timeout=10).status_code == 403


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"definitely not a spreadsheet", XLSX, "not recognized"),
        (b"", XLSX, "no form"),
        (xlsform([["type", "name", "label"], ["text", "a", "A"], ["text", "a", "B"]]), XLSX, "[row : 3]"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "application/xml", "DOCTYPE"),
        (b"<h:html xmlns:h='http://www.w3.org/1999/xhtml'><broken>", "text/xml", "well-formed"),
        (b"\xff\xfe not utf-8", "application/xml", "UTF-8"),
        (b"name,label", "application/pdf", "Content-Type"),
    ],
)
def test_bad_uploads_are_clear_400s(api: Api, body: bytes, content_type: str, expected: str) -> None:
    r = api.upload(body, content_type=content_type)
    assert r.status_code == 400, r.text
    problem = r.json()
    assert expected in problem["message"] and "Traceback" not in r.text
    if expected == "[row : 3]":
        assert problem["code"] == "400.8" and problem["details"] == {"sheet": "survey", "row": 3}


# ---- conversion runs outside the database ------------------------------------------------------------


def _big_form(questions: int) -> bytes:
    rows = [["type", "name", "label", "relevant"]]
    rows += [
        ["integer", f"q{i}", f"Question {i}", f"${{q{i - 1}}} > 0" if i else ""] for i in range(questions)
    ]
    return xlsform(rows, {"form_id": "big", "version": "1"})


@pytest.fixture(scope="module")
def slow_server(module_env: AppEnv) -> Iterator[LiveServer]:
    """The same store, served by an app whose conversion time limit is 1 second."""
    live, stop = serve_in_thread(module_env.app(conversion_timeout_seconds=1))
    yield live
    stop()


def test_a_long_conversion_holds_no_lock_and_times_out(api: Api, slow_server: LiveServer) -> None:
    big = _big_form(2500)
    result: dict[str, requests.Response] = {}

    def upload() -> None:
        result["r"] = requests.post(
            f"{slow_server.url}/v1/projects/{api.project}/forms",
            params={"publish": "true"},
            data=big,
            headers={**api.coordinator, "Content-Type": XLSX},
            timeout=60,
        )

    quick_xml = convert_xlsform(simple_form("during_conversion", "1"), ".xlsx", fallback_id=None, timeout=60)
    thread = threading.Thread(target=upload)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    # Meanwhile another write goes through at once: the conversion holds no transaction or lock.
    other = api.upload(quick_xml.xform.encode(), content_type="application/xml")
    assert other.status_code == 200 and thread.is_alive()
    thread.join(60)
    assert time.monotonic() - started < 30
    refused = result["r"]
    assert refused.status_code == 400 and "longer than 1 seconds" in refused.json()["message"]
    assert api.get("/big").status_code == 404


def test_simultaneous_uploads_of_one_new_form(api: Api) -> None:
    """Parallel first uploads of one form: one creates it, the others find it published (or are asked
    to retry, 409), never a 500 and never two forms."""
    xml = convert_xlsform(simple_form("racing", "1"), ".xlsx", fallback_id=None, timeout=60).xform.encode()
    barrier = threading.Barrier(4)

    def upload() -> requests.Response:
        barrier.wait()
        return api.upload(xml, content_type="application/xml")

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: upload(), range(4)))
    outcomes = sorted(r.json().get("outcome") or r.json()["code"] for r in replies)
    assert all(r.status_code in (200, 409) for r in replies), [r.text for r in replies]
    assert outcomes.count("created") == 1 and set(outcomes) <= {"created", "already_published", "409.3"}
    assert [v["version"] for v in api.get("/racing/versions").json()] == ["1"]


def test_publish_under_gunicorn(
    server_process: Callable[..., ServerProcess], make_env: Callable[[], AppEnv]
) -> None:
    """The deployment path: a gunicorn worker thread starts the conversion process."""
    env = make_env()
    app = env.app()
    with app.extensions["sarhad.db"].write() as w:
        project = create_project(w.session, "Gunicorn forms").id
        create_user(w.session, "gunicorn-forms@example.org", PASSWORD, "admin")
    app.extensions["sarhad.db"].engine.dispose()
    server = server_process(env)
    headers = _token(server.url, "gunicorn-forms@example.org")
    r = requests.post(
        f"{server.url}/v1/projects/{project}/forms?publish=true",
        data=rich_form("9", form_id="under_gunicorn"),
        headers={**headers, "Content-Type": XLSX},
        timeout=120,
    )
    assert r.status_code == 200 and r.json()["version"] == "9", r.text
    xml = requests.get(
        f"{server.url}/v1/projects/{project}/forms/under_gunicorn.xml", headers=headers, timeout=30
    )
    assert hashlib.md5(xml.content).hexdigest() == r.json()["hash"]
