# ruff: noqa: E501 — expected rows are written out as Central's tests write them.
"""Sarhad's CSV zip and OData against ODK Central's own fixtures and expected outputs, exactly.

Forms and instances come from Central's ``test/data/xml.js`` and ``test/unit/data/briefcase.js``
(``tests/central_fixtures.py``); each case publishes its form and sends its instances through
``server.ingest`` (the path every device uses), then reads the export over HTTP and compares the text
(CSV) or the parsed JSON (OData) with what Central's tests expect, character for character.

Central's unit tests feed a stream of rows with fixed metadata. Here the run-dependent parts are made
deterministic the same way, never skipped:

- ``SubmissionDate``: every submission of a case is given Central's fixed date after ingest (an UPDATE of
  ``submissions.created_at``, as Central's fixtures pass ``createdAt`` in). Equal dates make the order fall
  to the id (newest first), which this also checks: instances are ingested in the reverse of Central's
  stream order, because Central streams its rows newest first.
- Submitter ids: the app user's id is replaced by the fixture's after checking the name beside it.
- OData ``submissionDate``: checked against the database's value, then replaced by the fixture's text.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from typing import Any

import pytest
import requests
from sqlalchemy import update

from server.forms.xform import with_version
from server.models import Submission
from tests import central_fixtures as cf
from tests.datasets_fixtures import make_app_user, make_project, submit, web_user
from tests.openrosa_setup import publish_xform

CENTRAL_DATE = dt.datetime(2018, 1, 1, tzinfo=dt.UTC)


class Case:
    """One Central fixture: a project with the form, and its submissions sent through ingest."""

    count = 0

    def __init__(self, live: Any, form_xml: str, *, version: str | None = "version") -> None:
        Case.count += 1
        self.live = live
        self.project_id = make_project(live.database, f"central-{Case.count}")
        self.admin = web_user(live, f"parity-{Case.count}@example.tj", "admin", self.project_id)
        xml = cf.publishable(form_xml)
        if version is not None:
            xml = with_version(xml, version)
        publish_xform(live.app, self.project_id, xml.encode("utf-8"))

    def publish(self, form_xml: str, version: str) -> None:
        publish_xform(
            self.live.app, self.project_id, with_version(cf.publishable(form_xml), version).encode()
        )

    def submit(self, xml: str, *, app_user_id: int | None = None, device_id: str | None = None) -> None:
        result = submit(
            self.live.database,
            self.live.app,
            self.project_id,
            xml,
            app_user_id=app_user_id,
            device_id=device_id,
        )
        assert result is not None

    def dated(self, when: dt.datetime = CENTRAL_DATE) -> None:
        """Central's fixed ``createdAt`` on every submission of the case."""
        with self.live.database.write() as w:
            w.session.execute(
                update(Submission).where(Submission.form_id.in_(self._form_ids())).values(created_at=when)
            )

    def _form_ids(self) -> list[int]:
        from sqlalchemy import select

        from server.models import Form

        with self.live.database.read() as session:
            return list(session.scalars(select(Form.id).where(Form.project_id == self.project_id)))

    def get(self, path: str, **params: Any) -> requests.Response:
        reply = requests.get(
            f"{self.live.url}/v1/projects/{self.project_id}/forms/{path}",
            headers=self.admin.headers,
            params=params,
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        return reply

    def csv_files(self, form_id: str, **params: Any) -> dict[str, str]:
        archive = zipfile.ZipFile(io.BytesIO(self.get(f"{form_id}/submissions.csv.zip", **params).content))
        return {name: archive.read(name).decode("utf-8") for name in archive.namelist()}


def _mytestform_rows(case: Case, rows: list[tuple[str, str]]) -> None:
    """Central's stream order is newest first: ingest the last row first."""
    for instance_id, data in reversed(rows):
        case.submit(
            cf.instance("mytestform", instance_id, data).replace(
                'id="mytestform"', 'id="mytestform" version="version"'
            )
        )
    case.dated()


SIMPLE_ROWS = [
    ("one", "<name>Alice</name><age>30</age><hometown>Seattle, WA</hometown>"),
    ("two", "<name>Bob</name><age>34</age><hometown>Portland, OR</hometown>"),
    ("three", "<name>Chelsea</name><age>38</age><hometown>San Francisco, CA</hometown>"),
]


# ---- CSV: briefcase.js ---------------------------------------------------------------------------------


def test_csv_simple_flat_table(live_server: Any) -> None:
    case = Case(live_server, cf.MYTESTFORM)
    _mytestform_rows(case, SIMPLE_ROWS)
    files = case.csv_files("mytestform")
    assert list(files) == ["mytestform.csv"]
    assert (
        files["mytestform.csv"]
        == cf.CSV_EXPECTED["should output a simple flat table within a zip"]["mytestform.csv"]
    )
    # submissions.csv is the root table alone, in the same order
    assert case.get("mytestform/submissions.csv").content.decode() == files["mytestform.csv"]


def test_csv_submitter_information(live_server: Any) -> None:
    case = Case(live_server, cf.MYTESTFORM)
    fixture_ids = {"daniela": 4, "hernando": 8, "lito": 15}
    users = {name: make_app_user(live_server.database, case.project_id, name) for name in fixture_ids}
    for (instance_id, data), name in reversed(list(zip(SIMPLE_ROWS, fixture_ids, strict=True))):
        xml = cf.instance("mytestform", instance_id, data).replace(
            'id="mytestform"', 'id="mytestform" version="version"'
        )
        case.submit(xml, app_user_id=users[name])
    case.dated()
    text = case.csv_files("mytestform")["mytestform.csv"]
    for name, real_id in users.items():
        assert f",{real_id},{name}," in text
        text = text.replace(f",{real_id},{name},", f",{fixture_ids[name]},{name},")
    assert text == cf.CSV_EXPECTED["should attach submitter information if present"]["mytestform.csv"]


def test_csv_edit_count(live_server: Any) -> None:
    case = Case(live_server, cf.MYTESTFORM)
    previous = "one"
    case.submit('<data id="mytestform" version="version"><meta><instanceID>one</instanceID></meta>xml</data>')
    for n in (2, 3, 4):  # three edits, each naming the version it replaces
        current = f"one-v{n}"
        case.submit(
            f'<data id="mytestform" version="version"><meta><instanceID>{current}</instanceID>'
            f"<deprecatedID>{previous}</deprecatedID></meta>xml</data>"
        )
        previous = current
    case.dated()
    text = case.csv_files("mytestform")["mytestform.csv"]
    # Central's unit test streams a mock row without a review state; a real Central server marks an
    # edited submission "edited" (as Sarhad does), so that column is the one difference expected.
    expected = cf.CSV_EXPECTED["should attach an edit count if nonzero"]["mytestform.csv"]
    assert text == expected.replace(",0,0,,,,3,", ",0,0,,edited,,3,")


def test_csv_each_submission_form_version(live_server: Any) -> None:
    case = Case(live_server, cf.MYTESTFORM, version="updated")
    case.submit('<data id="mytestform" version="updated"><meta><instanceID>two</instanceID></meta>xml</data>')
    case.publish(cf.MYTESTFORM, "original")
    case.submit(
        '<data id="mytestform" version="original"><meta><instanceID>one</instanceID></meta>xml</data>'
    )
    case.dated()
    text = case.csv_files("mytestform")["mytestform.csv"]
    assert text == cf.CSV_EXPECTED["should list each submission form version"]["mytestform.csv"]


def test_csv_decodes_xml_entities(live_server: Any) -> None:
    case = Case(live_server, cf.MYTESTFORM)
    _mytestform_rows(
        case, [("one", "<name>&#171;Alice&#187;</name><age>30</age><hometown>Seattle, WA</hometown>")]
    )
    text = case.csv_files("mytestform")["mytestform.csv"]
    assert text == cf.CSV_EXPECTED["should decode xml entities for output"]["mytestform.csv"]


def test_csv_geopoint_in_four_columns(live_server: Any) -> None:
    case = Case(live_server, cf.GEOPOINT_FORM)
    _mytestform_rows(
        case,
        [
            ("one", "<name>Alice</name><age>30</age><location>47.649434 -122.347737 26.8 3.14</location>"),
            ("two", "<name>Bob</name><age>34</age><location>47.599115 -122.331753 10</location>"),
            ("three", "<name>Chelsea</name><age>38</age><location></location>"),
        ],
    )
    text = case.csv_files("mytestform")["mytestform.csv"]
    assert text == cf.CSV_EXPECTED["should split geopoint columns into four components"]["mytestform.csv"]


STRUCTURED_ROWS = [
    (
        "one",
        "<name>Alice</name><home><type>Apartment</type><address><street>101 Pike St</street><city>Seattle, WA</city></address></home>",
    ),
    (
        "two",
        "<name>Bob</name><home><address><street>20 Broadway</street><city>Portland, OR</city></address><type>Condo</type></home>",
    ),
    (
        "three",
        "<name>Chelsea</name><home><type>House</type><address><city>San Francisco, CA</city><street>99 Mission Ave</street></address></home>",
    ),
]


def _structured(case: Case, form_id: str, rows: list[tuple[str, str]]) -> None:
    for instance_id, data in reversed(rows):
        case.submit(
            cf.instance(form_id, instance_id, data).replace(
                f'id="{form_id}"', f'id="{form_id}" version="version"'
            )
        )
    case.dated()


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({}, "should flatten structures within a table"),
        ({"groupPaths": "false"}, "should leave out structure names if groupPaths = false"),
    ],
)
def test_csv_structures(live_server: Any, params: dict[str, str], name: str) -> None:
    case = Case(live_server, cf.STRUCTUREDFORM)
    _structured(case, "structuredform", STRUCTURED_ROWS)
    assert case.csv_files("structuredform", **params) == cf.CSV_EXPECTED[name]


def test_csv_single_level_repeats(live_server: Any) -> None:
    case = Case(live_server, cf.SINGLEREPEAT)
    _structured(
        case,
        "singlerepeat",
        [
            ("one", "<name>Alice</name><age>30</age>"),
            (
                "two",
                "<name>Bob</name><age>34</age><children><child><name>Billy</name><age>4</age></child></children><children><child><name>Blaine</name><age>6</age></child></children>",
            ),
            (
                "three",
                "<name>Chelsea</name><age>38</age><children><child><name>Candace</name><age>2</age></child></children>",
            ),
        ],
    )
    assert (
        case.csv_files("singlerepeat")
        == cf.CSV_EXPECTED["should handle single-level repeats, with KEY/PARENT_KEY"]
    )


def test_csv_nested_repeats(live_server: Any) -> None:
    case = Case(live_server, cf.MULTIREPEAT)
    _structured(
        case,
        "multirepeat",
        [
            ("one", "<name>Alice</name><age>30</age>"),
            (
                "two",
                "<name>Bob</name><age>34</age><children><child><name>Billy</name><age>4</age><toy><name>R2-D2</name></toy></child><child><name>Blaine</name><age>6</age><toy><name>BB-8</name></toy><toy><name>Porg plushie</name></toy></child><child><name>Baker</name><age>7</age></child></children>",
            ),
            (
                "three",
                "<name>Chelsea</name><age>38</age><children><child><name>Candace</name><toy><name>Millennium Falcon</name></toy><toy><name>X-Wing</name></toy><toy><name>Pod racer</name></toy><age>2</age></child></children>",
            ),
        ],
    )
    assert (
        case.csv_files("multirepeat") == cf.CSV_EXPECTED["should handle nested repeats, with PARENT_KEY/KEY"]
    )


def test_csv_path_prefix_extensions(live_server: Any) -> None:
    # Central's test names the form's output 'pathprefix' while the form says id="form": the form id is
    # set to the name the expected files carry.
    case = Case(live_server, cf.PATHPREFIX.replace('id="form"', 'id="pathprefix"'))
    _structured(
        case,
        "pathprefix",
        [
            (
                "one",
                "<name>Alice</name><children><name>Bob</name></children><children><name>Chelsea</name></children><children-status>Living at home</children-status>",
            )
        ],
    )
    assert case.csv_files("pathprefix") == cf.CSV_EXPECTED["should not be fooled by path prefix extensions"]


def test_csv_ambiguous_repeat_names(live_server: Any) -> None:
    case = Case(live_server, cf.AMBIGUOUS)
    _structured(
        case,
        "ambiguous",
        [
            ("one", "<name>Alice</name>"),
            (
                "two",
                "<name>Bob</name><jobs><entry><name>Bobs Hardware</name></entry><entry><name>Local Coffee</name></entry></jobs><friends><entry><name>Nasrin</name></entry></friends>",
            ),
            (
                "three",
                "<name>Chelsea</name><jobs><entry><name>Instantaneous Food</name></entry></jobs><friends><entry><name>Ferrence</name></entry><entry><name>Mick</name></entry></friends>",
            ),
        ],
    )
    assert (
        case.csv_files("ambiguous")
        == cf.CSV_EXPECTED["should disambiguate conflictingly named repeat groups"]
    )


def test_csv_briefcase_all_data_types(live_server: Any) -> None:
    case = Case(live_server, cf.ALL_DATA_TYPES, version=None)
    case.submit(cf.ALL_DATA_TYPES_INSTANCE)
    case.dated(dt.datetime(2018, 4, 26, 8, 58, 20, 525000, tzinfo=dt.UTC))
    assert case.csv_files("all-data-types") == cf.CSV_EXPECTED["briefcase replicated test: all-data-types"]


def test_csv_briefcase_nested_repeats(live_server: Any) -> None:
    case = Case(live_server, cf.NESTED_REPEATS, version=None)
    # The instance names version 2018012404 of a form that has none (Central's unit test never checks);
    # a real server refuses that, so the instance is sent without it, as the expected FormVersion ('') says.
    case.submit(cf.NESTED_REPEATS_INSTANCE.replace(' version="2018012404"', ""))
    case.dated(dt.datetime(2018, 2, 1, 11, 35, 19, 178000, tzinfo=dt.UTC))
    assert case.csv_files("nested-repeats") == cf.CSV_EXPECTED["briefcase replicated test: nested-repeats"]


def test_csv_encrypted_without_the_key(live_server: Any) -> None:
    """xml.js's encrypted form and its two envelopes, exported without a key: Central's rows say
    ``not decrypted`` (its integration test ``should handle mixed[plaintext/encrypted] formdata (not
    decrypting)``), and ``media/`` holds the attachments only, never the encrypted submission itself."""
    case = Case(live_server, cf.ENCRYPTED, version=None)
    for envelope, photo in (
        (cf.ENCRYPTED_TWO, "1561432532482.jpg.enc"),
        (cf.ENCRYPTED_ONE, "1561432508817.jpg.enc"),
    ):
        result = submit(
            live_server.database,
            live_server.app,
            case.project_id,
            envelope,
            {
                photo: b"encrypted photo " + photo.encode(),
                "submission.xml.enc": b"encrypted data of " + photo.encode(),
            },
            device_id=None,
        )
        assert result is not None
    case.dated()
    files = case.csv_files("encrypted")
    assert sorted(files) == ["encrypted.csv", "media/1561432508817.jpg.enc", "media/1561432532482.jpg.enc"]
    assert files["media/1561432508817.jpg.enc"] == "encrypted photo 1561432508817.jpg.enc"
    assert files["encrypted.csv"] == (
        "SubmissionDate,meta-instanceID,name,age,file,KEY,SubmitterID,SubmitterName,AttachmentsPresent,AttachmentsExpected,Status,ReviewState,DeviceID,Edits,FormVersion\n"
        "2018-01-01T00:00:00.000Z,,,,,uuid:dcf4a151-5088-453f-99e6-369d67828f7a,,,2,2,not decrypted,,,0,working3\n"
        "2018-01-01T00:00:00.000Z,,,,,uuid:99b303d9-6494-477b-a30d-d8aae8867335,,,2,2,not decrypted,,,0,working3\n"
    )


# ---- OData: odata.js ------------------------------------------------------------------------------------

ODATA_DATE = dt.datetime(2017, 9, 20, 17, 10, 43, tzinfo=dt.UTC)
# odata.js's __system: what its mock submission carries (submitter 5, Alice; no version).
SYSTEM: dict[str, Any] = {
    "submissionDate": "2017-09-20T17:10:43Z",
    "updatedAt": None,
    "deletedAt": None,
    "submitterId": "5",
    "submitterName": "Alice",
    "attachmentsPresent": 0,
    "attachmentsExpected": 0,
    "status": None,
    "reviewState": None,
    "deviceId": None,
    "edits": 0,
    "formVersion": "",
}


class ODataCase(Case):
    """A case whose submissions come from odata.js's mock submitter, Alice (id 5 there)."""

    def __init__(self, live: Any, form_xml: str) -> None:
        super().__init__(live, form_xml, version=None)
        self.alice = make_app_user(live.database, self.project_id, "Alice")

    def send(self, *instances: str, device_id: str | None = None) -> None:
        for xml in instances:
            self.submit(xml, app_user_id=self.alice, device_id=device_id)
        self.dated(ODATA_DATE)

    def rows(self, form_id: str, table: str = "Submissions", **params: Any) -> list[dict[str, Any]]:
        body = self.get(f"{form_id}.svc/{table}", **params).json()
        return [self.fixed(row) for row in body["value"]]

    def fixed(self, row: dict[str, Any]) -> dict[str, Any]:
        """The run-dependent __system values checked, then written as odata.js's mock has them."""
        system = row.get("__system")
        if system is not None:
            if "submissionDate" in system:  # Central's JSON date of the same instant
                assert system["submissionDate"] == "2017-09-20T17:10:43.000Z"
                system["submissionDate"] = SYSTEM["submissionDate"]
            if "submitterId" in system:
                assert system["submitterId"] == str(self.alice)
                system["submitterId"] = "5"
        return row


def test_odata_basic_submission(live_server: Any) -> None:
    case = ODataCase(live_server, cf.SIMPLE)
    case.send(cf.instance("simple", "one", "<name>Alice</name><age>30</age>"))
    assert case.rows("simple") == [
        {"__id": "one", "__system": SYSTEM, "meta": {"instanceID": "one"}, "name": "Alice", "age": 30}
    ]
    # "should return only selected properties"
    assert case.rows("simple", **{"$select": "__id,__system/status,meta,name"}) == [
        {"__id": "one", "__system": {"status": None}, "meta": {"instanceID": "one"}, "name": "Alice"}
    ]


def test_odata_system_review_state_and_device(live_server: Any) -> None:
    """ "should set the correct review state" and "... deviceId", read as ``$select=__id,__system``
    (odata.js gives no fields, so its rows hold only those two)."""
    case = ODataCase(live_server, cf.SIMPLE)
    case.send(cf.instance("simple", "test", "<name>Alice</name><age>30</age>"), device_id="cool device")
    assert case.rows("simple", **{"$select": "__id,__system"}) == [
        {"__id": "test", "__system": {**SYSTEM, "deviceId": "cool device"}}
    ]
    reply = requests.patch(
        f"{live_server.url}/v1/projects/{case.project_id}/forms/simple/submissions/test",
        json={"reviewState": "hasIssues"},
        headers=case.admin.headers,
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    (row,) = case.rows("simple", **{"$select": "__id,__system"})
    updated = row["__system"].pop("updatedAt")
    assert updated is not None  # Central sets updatedAt on a review too; odata.js's mock has none
    assert row == {
        "__id": "test",
        "__system": {
            k: v
            for k, v in {**SYSTEM, "deviceId": "cool device", "reviewState": "hasIssues"}.items()
            if k != "updatedAt"
        },
    }


def test_odata_navigation_links_for_repeats(live_server: Any) -> None:
    case = ODataCase(live_server, cf.WITHREPEAT)
    case.send(cf.WITHREPEAT_TWO)
    # odata.js's mock row has no form version; the real withrepeat form is version 1.0 (orx:version)
    assert case.rows("withrepeat") == [
        {
            "__id": "rtwo",
            "__system": {**SYSTEM, "formVersion": "1.0"},
            "meta": {"instanceID": "rtwo"},
            "name": "Bob",
            "age": 34,
            "children": {"child@odata.navigationLink": "Submissions('rtwo')/children/child"},
        }
    ]


def test_odata_subtable_rows_within_repeats(live_server: Any) -> None:
    """ "should extract subtable rows within repeats": odata.js's row is withrepeat.two's XML under the
    instance id 'two', so the instance is sent with that instanceID."""
    case = ODataCase(live_server, cf.WITHREPEAT)
    case.send(cf.WITHREPEAT_TWO.replace(">rtwo<", ">two<"))
    assert case.rows("withrepeat", "Submissions.children.child") == [
        {
            "__Submissions-id": "two",
            "__id": "cf9a1b5cc83c6d6270c1eb98860d294eac5d526d",
            "age": 4,
            "name": "Billy",
        },
        {
            "__Submissions-id": "two",
            "__id": "c76d0ccc6d5da236be7b93b985a80413d2e3e172",
            "age": 6,
            "name": "Blaine",
        },
    ]


DOUBLE_CHILDREN = [
    {
        "__id": "46ebf42ee83ddec5028c42b2c054402d1e700208",
        "__Submissions-id": "double",
        "name": "Alice",
        "toys": {},
    },
    {
        "__id": "b6e93a81a53eed0566e65e472d4a4b9ae383ee6d",
        "__Submissions-id": "double",
        "name": "Bob",
        "toys": {
            "toy@odata.navigationLink": "Submissions('double')/children/child('b6e93a81a53eed0566e65e472d4a4b9ae383ee6d')/toys/toy"
        },
    },
    {
        "__id": "8954b393f82c1833abb19be08a3d6cb382171f54",
        "__Submissions-id": "double",
        "name": "Chelsea",
        "toys": {
            "toy@odata.navigationLink": "Submissions('double')/children/child('8954b393f82c1833abb19be08a3d6cb382171f54')/toys/toy"
        },
    },
]
BOB, CHELSEA = "b6e93a81a53eed0566e65e472d4a4b9ae383ee6d", "8954b393f82c1833abb19be08a3d6cb382171f54"
DOUBLE_TOYS = [
    ("a9058d7b2ed9557205ae53f5b1dc4224043eca2a", BOB, "Twilight Sparkle"),
    ("8d2dc7bd3e97a690c0813e646658e51038eb4144", BOB, "Pinkie Pie"),
    ("b716dd8b79a4c9369d6b1e7a9c9d55ac18da1319", BOB, "Applejack"),
    ("52fbd613acc151ee1187026890f6246b35f69144", BOB, "Spike"),
    ("4a4a05249c8f992b0b3cc7dbe690b57cf18e8ea9", CHELSEA, "Rainbow Dash"),
    ("00ae97cddc4804157e3a0b13ff9e30d86cfd1547", CHELSEA, "Rarity"),
    ("ecc1d831ae487ceef09ab7ccc0a021d3cab48988", CHELSEA, "Fluttershy"),
    ("d6539297765d97b951c6a63d7f70cafeb1741f8d", CHELSEA, "Princess Luna"),
]


def test_odata_double_repeat_subtables(live_server: Any) -> None:
    """ "should return navigation links to repeats within a subtable result set", "should return
    second-order subtable results" (twice: all of it, then ``$select=name`` with ids), "should return all
    IDs if __id is requested"."""
    case = ODataCase(live_server, cf.DOUBLE_REPEAT)
    case.send(cf.DOUBLE_REPEAT_DOUBLE)
    assert case.rows("doubleRepeat", "Submissions.children.child") == DOUBLE_CHILDREN
    toys = [{"__id": i, "__Submissions-children-child-id": p, "name": n} for i, p, n in DOUBLE_TOYS]
    assert case.rows("doubleRepeat", "Submissions.children.child.toys.toy") == toys
    selected = {"$select": "__id,__Submissions-children-child-id,name"}
    assert case.rows("doubleRepeat", "Submissions.children.child.toys.toy", **selected) == toys
    ids_only = case.rows("doubleRepeat", "Submissions.children.child", **{"$select": "__id,__Submissions-id"})
    assert ids_only == [{"__id": c["__id"], "__Submissions-id": "double"} for c in DOUBLE_CHILDREN]


def test_odata_expand_all_repeats(live_server: Any) -> None:
    """ "should expand all repeat tables for $expand=*": odata.js runs doubleRepeat.double's XML under
    the instance id 'two', so the instance is sent with that instanceID (and meta says 'two', where
    odata.js's mock, whose XML was not changed, says 'double')."""
    case = ODataCase(live_server, cf.DOUBLE_REPEAT)
    case.send(cf.DOUBLE_REPEAT_DOUBLE.replace(">double<", ">two<"))

    def toy(id_: str, name: str) -> dict[str, str]:
        return {"__id": id_, "name": name}

    expected = {
        "__id": "two",
        "name": "Vick",
        "__system": {**SYSTEM, "formVersion": "1.0"},  # (the real form's orx:version; the mock has none)
        "meta": {"instanceID": "two"},
        "children": {
            "child@odata.navigationLink": "Submissions('two')/children/child",
            "child": [
                {"__id": "cf9a1b5cc83c6d6270c1eb98860d294eac5d526d", "name": "Alice", "toys": {}},
                {
                    "__id": "c76d0ccc6d5da236be7b93b985a80413d2e3e172",
                    "name": "Bob",
                    "toys": {
                        "toy@odata.navigationLink": "Submissions('two')/children/child('c76d0ccc6d5da236be7b93b985a80413d2e3e172')/toys/toy",
                        "toy": [
                            toy("edc8e56945b78ca7d8edeb54c98d5f5e1dec8490", "Twilight Sparkle"),
                            toy("7715214d84af857ba4e64bacc89a31dce16620bb", "Pinkie Pie"),
                            toy("f69554753d1a7b9d4c6a63596d9776619a232ece", "Applejack"),
                            toy("ee6ee4f76495c2a7839b2893ab3b409f08bcffaa", "Spike"),
                        ],
                    },
                },
                {
                    "__id": "57c0d9e982699e087c34a22696c10753a15beb6c",
                    "name": "Chelsea",
                    "toys": {
                        "toy@odata.navigationLink": "Submissions('two')/children/child('57c0d9e982699e087c34a22696c10753a15beb6c')/toys/toy",
                        "toy": [
                            toy("0c2ddb3ec8921091961dce34fa2dfbdd25ed368c", "Rainbow Dash"),
                            toy("efa00a552968b84b1784b4c9c820a32a03cf4aea", "Rarity"),
                            toy("611d4cbce170a9525ccb79a2fd48acb7cc1ef844", "Fluttershy"),
                            toy("ed4a384b1dfd9002409e5279a2720a685e0e162d", "Princess Luna"),
                        ],
                    },
                },
            ],
        },
    }
    assert case.rows("doubleRepeat", **{"$expand": "*"}) == [expected]


def _geo_form(form_id: str, fields: list[tuple[str, str]]) -> str:
    """An XForm holding exactly odata.js's MockFields (plus the instanceID every submission needs)."""
    binds = "".join(f'<bind nodeset="/data/{n}" type="{t}"/>' for n, t in fields)
    nodes = "".join(f"<{n}/>" for n, _ in fields)
    return (
        '<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"><h:head>'
        f'<h:title>{form_id}</h:title><model><instance><data id="{form_id}"><meta><instanceID/></meta>{nodes}'
        '</data></instance><bind nodeset="/data/meta/instanceID" type="string"/>'
        f"{binds}</model></h:head><h:body/></h:html>"
    )


GEO_CASES = [
    (
        "should output geojson geotrace values",
        [("geotrace", "geotrace"), ("geotraceNoAlt", "geotrace")],
        "<geotrace>1.1 2.2 3.3 4.4;5.5 6.6 7.7 8.8;</geotrace><geotraceNoAlt>11.1 22.2;33.3 44.4;55.5 66.6;</geotraceNoAlt>",
        {},
        {
            "geotrace": {
                "type": "LineString",
                "coordinates": [[2.2, 1.1, 3.3], [6.6, 5.5, 7.7]],
                "properties": {"accuracies": [4.4, 8.8]},
            },
            "geotraceNoAlt": {
                "type": "LineString",
                "coordinates": [[22.2, 11.1], [44.4, 33.3], [66.6, 55.5]],
            },
        },
    ),
    (
        "should format geotrace values as WKT if requested",
        [("geotrace", "geotrace"), ("geotraceNoAlt", "geotrace")],
        "<geotrace>1.1 2.2 3.3 4.4;5.5 6.6 7.7 8.8;</geotrace><geotraceNoAlt>11.1 22.2;33.3 44.4;55.5 66.6;</geotraceNoAlt>",
        {"$wkt": "true"},
        {
            "geotrace": "LINESTRING (2.2 1.1 3.3,6.6 5.5 7.7)",
            "geotraceNoAlt": "LINESTRING (22.2 11.1,44.4 33.3,66.6 55.5)",
        },
    ),
    (
        "should output geojson geoshape values",
        [("polygon", "geoshape"), ("polygonNoAlt", "geoshape")],
        "<polygon>1.1 2.2 3.3 4.4;5.5 6.6 7.7 8.8;10.0 20.0 30.0 40.0;1.1 2.2 3.3 4.4;</polygon><polygonNoAlt>11.1 22.2;33.3 44.4;55.5 66.6;11.1 22.2;</polygonNoAlt>",
        {},
        {
            "polygon": {
                "type": "Polygon",
                "coordinates": [[[2.2, 1.1, 3.3], [6.6, 5.5, 7.7], [20.0, 10.0, 30.0], [2.2, 1.1, 3.3]]],
                "properties": {"accuracies": [4.4, 8.8, 40.0, 4.4]},
            },
            "polygonNoAlt": {
                "type": "Polygon",
                "coordinates": [[[22.2, 11.1], [44.4, 33.3], [66.6, 55.5], [22.2, 11.1]]],
            },
        },
    ),
    (
        "should output geojson geoshape values with a space after the ; separator",
        [("polygon", "geoshape"), ("polygonNoAlt", "geoshape")],
        "<polygon>1.1 2.2 3.3 4.4; 5.5 6.6 7.7 8.8;10.0 20.0 30.0 40.0;1.1 2.2 3.3 4.4;</polygon><polygonNoAlt>11.1 22.2; 33.3 44.4;55.5 66.6; 11.1 22.2; </polygonNoAlt>",
        {},
        {
            "polygon": {
                "type": "Polygon",
                "coordinates": [[[2.2, 1.1, 3.3], [6.6, 5.5, 7.7], [20.0, 10.0, 30.0], [2.2, 1.1, 3.3]]],
                "properties": {"accuracies": [4.4, 8.8, 40.0, 4.4]},
            },
            "polygonNoAlt": {
                "type": "Polygon",
                "coordinates": [[[22.2, 11.1], [44.4, 33.3], [66.6, 55.5], [22.2, 11.1]]],
            },
        },
    ),
    (
        "should format polygon values as WKT if requested",
        [("polygon", "geoshape"), ("polygonNoAlt", "geoshape")],
        "<polygon>1.1 2.2 3.3 4.4;5.5 6.6 7.7 8.8;10.0 20.0 30.0 40.0;1.1 2.2 3.3 4.4;</polygon><polygonNoAlt>11.1 22.2;33.3 44.4;55.5 66.6;11.1 22.2;</polygonNoAlt>",
        {"$wkt": "true"},
        {
            "polygon": "POLYGON ((2.2 1.1 3.3,6.6 5.5 7.7,20 10 30,2.2 1.1 3.3))",
            "polygonNoAlt": "POLYGON ((22.2 11.1,44.4 33.3,66.6 55.5,22.2 11.1))",
        },
    ),
    (
        "should format geopoint values as WKT if requested",
        [("geopoint", "geopoint"), ("geopointNoAlt", "geopoint")],
        "<geopoint>4.8 15.16 23.42</geopoint><geopointNoAlt>11.38 -11.38</geopointNoAlt>",
        {"$wkt": "true"},
        {"geopoint": "POINT (15.16 4.8 23.42)", "geopointNoAlt": "POINT (-11.38 11.38)"},
    ),
    (
        "should not attempt to provide broken geospatial values",
        [("geopointNoLon", "geopoint"), ("geopointNonsense", "geopoint")],
        "<geopointNoLon>100</geopointNoLon><geopointNonsense>this is nonsensical</geopointNonsense>",
        {},
        {"geopointNoLon": None, "geopointNonsense": None},
    ),
]


@pytest.mark.parametrize(
    ("name", "fields", "data", "params", "values"), GEO_CASES, ids=[c[0] for c in GEO_CASES]
)
def test_odata_geo_values(
    live_server: Any,
    name: str,
    fields: list[tuple[str, str]],
    data: str,
    params: dict[str, str],
    values: dict[str, Any],
) -> None:
    case = ODataCase(live_server, _geo_form("geo", fields))
    instance_id = {"$wkt": "wkt"}.get(next(iter(params), ""), "geojson" if "geojson" in name else "geo")
    case.send(cf.instance("geo", instance_id, data))
    selected = ",".join(["__id", "__system", *(n for n, _ in fields)])
    assert case.rows("geo", **params, **{"$select": selected}) == [
        {"__id": instance_id, "__system": SYSTEM, **values}
    ]


# ---- newest first, and paging ----------------------------------------------------------------------------


def test_odata_newest_first_paging(live_server: Any) -> None:
    """xml.js's simple one, two, three sent in that order: ``$top=2`` gives three and two and a next link
    that gives one; ``$skip`` counts from the newest. Equal dates fall back to the id, newest first."""
    case = ODataCase(live_server, cf.SIMPLE)
    people = {"one": ("Alice", 30), "two": ("Bob", 34), "three": ("Chelsea", 38)}
    case.send(*(cf.instance("simple", i, f"<name>{n}</name><age>{a}</age>") for i, (n, a) in people.items()))

    def row(instance_id: str) -> dict[str, Any]:
        name, age = people[instance_id]
        return {
            "__id": instance_id,
            "__system": SYSTEM,
            "meta": {"instanceID": instance_id},
            "name": name,
            "age": age,
        }

    first = case.get("simple.svc/Submissions", **{"$top": 2, "$count": "true"}).json()
    assert [case.fixed(r) for r in first["value"]] == [row("three"), row("two")]
    assert first["@odata.count"] == 3
    following = requests.get(first["@odata.nextLink"], headers=case.admin.headers, timeout=30).json()
    assert [case.fixed(r) for r in following["value"]] == [row("one")]
    assert "@odata.nextLink" not in following
    assert case.rows("simple", **{"$skip": 1, "$top": 1}) == [row("two")]
    assert case.rows("simple", **{"$skip": 2}) == [row("one")]
    # The JSON list and the CSV agree.
    listed = case.get("simple/submissions").json()
    assert [s["instanceId"] for s in listed] == ["three", "two", "one"]
    csv_keys = [line.split(",")[4] for line in case.get("simple/submissions.csv").text.splitlines()[1:]]
    assert csv_keys == ["three", "two", "one"]


def test_odata_newest_first_by_received_time(live_server: Any) -> None:
    """Received time comes first, the id only breaks ties: a submission given an earlier time sorts last."""
    case = ODataCase(live_server, cf.SIMPLE)
    case.send(*(cf.instance("simple", i, "<name>x</name>") for i in ("one", "two", "three")))
    with live_server.database.write() as w:
        w.session.execute(
            update(Submission)
            .where(Submission.instance_id == "three")
            .values(created_at=ODATA_DATE - dt.timedelta(days=1))
        )
    assert [r["__id"] for r in case.get("simple.svc/Submissions").json()["value"]] == ["two", "one", "three"]
    page = case.get("simple.svc/Submissions", **{"$top": 1}).json()
    after = requests.get(page["@odata.nextLink"], headers=case.admin.headers, timeout=30).json()
    assert [r["__id"] for r in after["value"]] == ["one"]


def test_odata_metadata_system_type_is_centrals(live_server: Any) -> None:
    """``org.opendatakit.submission.metadata`` has Central's properties, types and order
    (lib/formats/odata.js's EDMX template)."""
    from lxml import etree

    case = ODataCase(live_server, cf.SIMPLE)
    edmx = etree.fromstring(case.get("simple.svc/$metadata").content)
    edm = "{http://docs.oasis-open.org/odata/ns/edm}"
    (schema,) = [s for s in edmx.iter(f"{edm}Schema") if s.get("Namespace") == "org.opendatakit.submission"]
    (metadata,) = schema.findall(f"{edm}ComplexType")
    assert metadata.get("Name") == "metadata"
    assert [(p.get("Name"), p.get("Type")) for p in metadata] == [
        ("submissionDate", "Edm.DateTimeOffset"),
        ("updatedAt", "Edm.DateTimeOffset"),
        ("deletedAt", "Edm.DateTimeOffset"),
        ("submitterId", "Edm.String"),
        ("submitterName", "Edm.String"),
        ("attachmentsPresent", "Edm.Int64"),
        ("attachmentsExpected", "Edm.Int64"),
        ("status", "org.opendatakit.submission.Status"),
        ("reviewState", "org.opendatakit.submission.ReviewState"),
        ("deviceId", "Edm.String"),
        ("edits", "Edm.Int64"),
        ("formVersion", "Edm.String"),
    ]
    enums = {e.get("Name"): [m.get("Name") for m in e] for e in schema.findall(f"{edm}EnumType")}
    assert enums == {
        "Status": ["notDecrypted", "missingEncryptedFormData"],
        "ReviewState": ["hasIssues", "edited", "rejected", "approved"],
    }
