"""What Central reads from forms and submissions, over real HTTP: ``orx:version``, titles kept exactly
(``name`` null without one), ``X-XlsForm-FormId-Fallback`` taken as it is (pyodk sends ``uuid:…``), and
a bare ``&`` in a submission read as itself."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import select

from server.models import SubmissionVersion
from server.projects import create_project
from server.users import create_user
from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import LiveServer
from tests.openrosa_setup import counts, form_pk, key_url, make_device
from tests.test_forms_publish import xlsform

PASSWORD = "a long enough password"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# Like Central's withrepeat fixture (written by an older tool): the version is orx:version.
ORX_VERSION_FORM = """<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head>
    {title}
    <model>
      <instance>
        <data id="{form_id}" orx:version="1.0">
          <orx:meta><orx:instanceID/></orx:meta>
          <name/>
          <children><child><name/></child></children>
        </data>
      </instance>
      <bind nodeset="/data/meta/instanceID" preload="uid" type="string"/>
      <bind nodeset="/data/name" type="string"/>
      <bind nodeset="/data/children/child/name" type="string"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/name"><label>What is your name?</label></input>
    <group ref="/data/children/child"><label>Child</label>
      <repeat nodeset="/data/children/child">
        <input ref="/data/children/child/name"><label>What is the child's name?</label></input>
      </repeat>
    </group>
  </h:body>
</h:html>
"""


def orx_form(form_id: str, title: str | None = "<h:title>withrepeat</h:title>") -> bytes:
    return ORX_VERSION_FORM.format(form_id=form_id, title=title or "").encode()


def orx_instance(form_id: str, instance_id: str, version_attr: str = 'orx:version="1.0"') -> bytes:
    return (
        f'<data id="{form_id}" {version_attr} xmlns:orx="http://openrosa.org/xforms">'
        f"<orx:meta><orx:instanceID>{instance_id}</orx:instanceID></orx:meta>"
        "<name>Alice</name><children><child><name>Bob</name></child></children></data>"
    ).encode()


@dataclass
class Site:
    live: LiveServer
    project: int
    auth: dict[str, str]
    token: str

    @property
    def forms(self) -> str:
        return f"{self.live.url}/v1/projects/{self.project}/forms"

    def collect(self) -> CollectEmulator:
        return CollectEmulator(key_url(self.live.url, self.token, self.project))

    def upload(self, body: bytes, content_type: str = "application/xml", **headers: str) -> requests.Response:
        return requests.post(
            self.forms,
            params={"publish": "true"},
            data=body,
            headers={**self.auth, "Content-Type": content_type, **headers},
            timeout=120,
        )


@pytest.fixture(scope="module")
def site(live_server: LiveServer) -> Site:
    with live_server.database.write() as w:
        project = create_project(w.session, "Central rules")
        create_user(w.session, "rules@example.org", PASSWORD, "coordinator", project)
        project_id = project.id
    _, token = make_device(live_server.app, project_id)
    r = requests.post(
        f"{live_server.url}/v1/sessions",
        json={"email": "rules@example.org", "password": PASSWORD},
        timeout=10,
    )
    return Site(live_server, project_id, {"Authorization": f"Bearer {r.json()['token']}"}, token)


def test_orx_version_is_the_forms_version_and_collects_submissions_match_it(site: Site) -> None:
    published = site.upload(orx_form("withrepeat"))
    assert published.status_code == 200 and published.json()["version"] == "1.0", published.text
    listed = {f.form_id: f for f in site.collect().form_list()}
    assert listed["withrepeat"].version == "1.0"

    collect = site.collect()
    for n, attr in enumerate(['orx:version="1.0"', 'version="1.0"']):
        iid = f"uuid:withrepeat-{n}"
        sent = collect.submit(Instance("withrepeat", iid, orx_instance("withrepeat", iid, attr)))
        assert sent.status == 201, sent
    unknown = collect.submit(
        Instance("withrepeat", "uuid:w-9", orx_instance("withrepeat", "uuid:w-9", 'orx:version="2.0"'))
    )
    assert unknown.status == 404
    pk = form_pk(site.live.database, site.project, "withrepeat")
    assert counts(site.live.database, pk)["submissions"] == 2


def test_form_name_is_null_without_a_title_and_a_title_is_kept_exactly(site: Site) -> None:
    untitled = site.upload(orx_form("untitled", title=None)).json()
    assert untitled["name"] is None
    assert requests.get(f"{site.forms}/untitled", headers=site.auth, timeout=10).json()["name"] is None
    # Collect needs a name in the form list: the form id stands in.
    assert {f.form_id: f.name for f in site.collect().form_list()}["untitled"] == "untitled"

    spaced = site.upload(orx_form("spaced", title="<h:title>  Two  spaces\tand a tab </h:title>")).json()
    assert spaced["name"] == "  Two  spaces\tand a tab "
    listed = {
        f["xmlFormId"]: f["name"] for f in requests.get(site.forms, headers=site.auth, timeout=10).json()
    }
    assert listed["spaced"] == "  Two  spaces\tand a tab " and listed["untitled"] is None


NO_FORM_ID = [["type", "name", "label"], ["text", "q", "Question"]]


def test_xlsform_without_form_id_takes_the_fallback_header_exactly(site: Site) -> None:
    made = requests.post(
        site.forms,
        data=xlsform(NO_FORM_ID, {"version": "1"}),
        headers={
            **site.auth,
            "Content-Type": XLSX,
            "X-XlsForm-FormId-Fallback": quote("uuid:5b1c-✅", safe=""),
        },
        timeout=120,
    )
    assert made.status_code == 200 and made.json()["xmlFormId"] == "uuid:5b1c-✅", made.text
    form_url = f"{site.forms}/{quote('uuid:5b1c-✅', safe='')}"
    # A new version through a draft: the fallback names it there too (pyodk's forms.update).
    draft = requests.post(
        f"{form_url}/draft",
        data=xlsform(NO_FORM_ID, {"version": "2"}),
        headers={**site.auth, "Content-Type": XLSX, "X-XlsForm-FormId-Fallback": quote("uuid:5b1c-✅")},
        timeout=120,
    )
    assert draft.status_code == 200, draft.text
    assert requests.post(f"{form_url}/draft/publish", headers=site.auth, timeout=30).status_code == 200
    assert requests.get(form_url, headers=site.auth, timeout=10).json()["version"] == "2"

    # A form_id in the settings sheet wins over the header, as in Central.
    named = site.upload(
        xlsform(NO_FORM_ID, {"form_id": "named", "version": "1"}),
        XLSX,
        **{"X-XlsForm-FormId-Fallback": "other"},
    )
    assert named.json()["xmlFormId"] == "named"
    # The header's form id must not be another form's: the draft of "named" refuses "uuid:5b1c-✅".
    mismatch = requests.post(
        f"{site.forms}/named/draft",
        data=xlsform(NO_FORM_ID, {"version": "3"}),
        headers={**site.auth, "Content-Type": XLSX, "X-XlsForm-FormId-Fallback": quote("uuid:5b1c-✅")},
        timeout=120,
    )
    assert mismatch.status_code == 400
    bad = site.upload(
        xlsform(NO_FORM_ID, {"version": "1"}), XLSX, **{"X-XlsForm-FormId-Fallback": "a%2F..%2Fb"}
    )
    assert bad.status_code == 400


def test_a_bare_ampersand_in_a_submission_is_read_as_itself(site: Site) -> None:
    site.upload(orx_form("amp"))
    iid = "sena_~~!@#$%^&*()_+=-✅✅"
    raw = orx_instance("amp", iid)  # the & is not escaped, as pyodk's own tests send it
    assert b"^&*" in raw
    collect = site.collect()
    assert collect.submit(Instance("amp", iid, raw)).status == 201
    assert collect.submit(Instance("amp", iid, raw)).status == 201  # a resend is the same submission
    one = requests.get(f"{site.forms}/amp/submissions/{quote(iid, safe='')}", headers=site.auth, timeout=10)
    assert one.status_code == 200 and one.json()["instanceId"] == iid
    with site.live.database.read() as session:
        stored = session.scalars(
            select(SubmissionVersion.xml).where(SubmissionVersion.instance_id == iid)
        ).all()
    assert len(stored) == 1 and "^&amp;*" in stored[0]  # well-formed XML saying the same text
    broken = collect.submit(Instance("amp", "uuid:broken", b'<data id="amp"><unclosed></data>'))
    assert broken.status == 400
