"""Form ids and instance ids with any character Central allows, over gunicorn and Werkzeug's server.

pyodk and Collect put an id in one path segment, percent-encoded (``/`` as ``%2F``, ``%`` as ``%25``);
both WSGI servers decode the path before the application sees it, so these tests go through real HTTP
servers: the /v1 API (forms, drafts, media, submissions) and the OpenRosa routes (form list, download,
manifest, media, submission). Ids with control characters or ``.``/``..`` segments are refused with 400
and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

import pytest
import requests
from flask import Flask

from server.db import Database
from server.projects import create_project
from server.users import create_user
from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import AppEnv, ServerProcess, serve_in_thread
from tests.openrosa_setup import counts, form_pk, key_url, make_device

PASSWORD = "a long enough password"
SPECIALS = "'=+/*-451%/%"  # pyodk's own fixture
ODD_IDS = [SPECIALS, "✅", 'say "hi" 50% / more', "a%2Fb", "uuid:1a2b"]
INSTANCE_ID = "sena_~~!@#$%^&*()_+=-✅✅"

FORM = """<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head>
    <h:title>Odd ids</h:title>
    <model>
      <instance><data id={form_id} version="1"><fruit/><meta><instanceID/></meta></data></instance>
      <instance id="fruits" src="jr://file-csv/fruits.csv"/>
      <bind nodeset="/data/fruit" type="string"/>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" jr:preload="uid"/>
    </model>
  </h:head>
  <h:body><input ref="/data/fruit"><label>Fruit</label></input></h:body>
</h:html>
"""
FRUITS = b"name_key,name\nmango,Mango\n"


def form_xml(form_id: str) -> bytes:
    return FORM.format(form_id=quoteattr(form_id)).encode()


def submission_xml(form_id: str, instance_id: str, fruit: str = "Mango") -> bytes:
    return (
        f'<data id={quoteattr(form_id)} version="1"><fruit>{fruit}</fruit>'
        f"<meta><instanceID>{escape(instance_id)}</instanceID></meta></data>"
    ).encode()


def segment(value: str) -> str:
    """An id as pyodk puts it in a path (``quote`` with Central's safe characters)."""
    return quote(value, safe="*'()")


@dataclass
class Site:
    url: str
    app: Flask
    database: Database
    project: int
    auth: dict[str, str]
    device_token: str

    def forms(self) -> str:
        return f"{self.url}/v1/projects/{self.project}/forms"

    def form(self, form_id: str) -> str:
        return f"{self.forms()}/{segment(form_id)}"


@pytest.fixture(params=["gunicorn", "werkzeug"])
def site(
    request: pytest.FixtureRequest,
    make_env: Callable[[], AppEnv],
    server_process: Callable[..., ServerProcess],
) -> Iterator[Site]:
    env = make_env()
    app = env.app()
    database: Database = app.extensions["sarhad.db"]
    with database.write() as w:
        project = create_project(w.session, "Odd ids")
        create_user(w.session, "ids@example.org", PASSWORD, "coordinator", project)
        project_id = project.id
    _, token = make_device(app, project_id)
    stop: Callable[[], None] | None = None
    if request.param == "gunicorn":
        url = server_process(env).url
    else:
        live, stop = serve_in_thread(app)
        url = live.url
    signed = requests.post(
        f"{url}/v1/sessions", json={"email": "ids@example.org", "password": PASSWORD}, timeout=10
    )
    yield Site(url, app, database, project_id, {"Authorization": f"Bearer {signed.json()['token']}"}, token)
    if stop is not None:
        stop()


def publish_with_media(site: Site, form_id: str) -> None:
    """As pyodk does: the form as a draft, its media on the draft, then publish."""
    made = requests.post(
        site.forms(),
        data=form_xml(form_id),
        headers={**site.auth, "Content-Type": "application/xml"},
        timeout=30,
    )
    assert made.status_code == 200 and made.json()["xmlFormId"] == form_id, made.text
    media = requests.post(
        f"{site.form(form_id)}/draft/attachments/fruits.csv", data=FRUITS, headers=site.auth, timeout=30
    )
    assert media.status_code == 200, media.text
    published = requests.post(f"{site.form(form_id)}/draft/publish", headers=site.auth, timeout=30)
    assert published.status_code == 200, published.text


def test_odd_form_ids_on_every_v1_route(site: Site) -> None:
    for form_id in ODD_IDS:
        publish_with_media(site, form_id)
    listed = requests.get(site.forms(), headers=site.auth, timeout=10).json()
    assert sorted(f["xmlFormId"] for f in listed) == sorted(ODD_IDS)
    for form_id in ODD_IDS:
        one = requests.get(site.form(form_id), headers=site.auth, timeout=10)
        assert one.status_code == 200 and one.json()["xmlFormId"] == form_id, (form_id, one.text)
        xml = requests.get(f"{site.form(form_id)}.xml", headers=site.auth, timeout=10)
        assert xml.status_code == 200 and quoteattr(form_id).encode() in xml.content
        versions = requests.get(f"{site.form(form_id)}/versions", headers=site.auth, timeout=10).json()
        assert [v["version"] for v in versions] == ["1"]
        media = requests.get(f"{site.form(form_id)}/attachments/fruits.csv", headers=site.auth, timeout=10)
        assert media.content == FRUITS
    # "a%2Fb" is a literal percent sign, "2F" and b: not the form "a/b" (there is none).
    literal = requests.get(f"{site.forms()}/a%252Fb", headers=site.auth, timeout=10)
    assert literal.json()["xmlFormId"] == "a%2Fb"
    assert requests.get(f"{site.forms()}/a%2Fb", headers=site.auth, timeout=10).status_code == 404


def test_odd_instance_ids_through_the_api(site: Site) -> None:
    publish_with_media(site, SPECIALS)
    subs = f"{site.form(SPECIALS)}/submissions"
    made = requests.post(
        subs,
        data=submission_xml(SPECIALS, INSTANCE_ID),
        headers={**site.auth, "Content-Type": "application/xml"},
        timeout=30,
    )
    assert made.status_code == 200 and made.json()["instanceId"] == INSTANCE_ID, made.text
    one = requests.get(f"{subs}/{segment(INSTANCE_ID)}", headers=site.auth, timeout=10)
    assert one.status_code == 200 and one.json()["instanceId"] == INSTANCE_ID
    xml = requests.get(f"{subs}/{segment(INSTANCE_ID)}.xml", headers=site.auth, timeout=10)
    assert xml.status_code == 200 and escape(INSTANCE_ID).encode() in xml.content
    assert [s["instanceId"] for s in requests.get(subs, headers=site.auth, timeout=10).json()] == [
        INSTANCE_ID
    ]


def test_collect_lists_downloads_and_submits_odd_form_ids(site: Site) -> None:
    for form_id in ODD_IDS:
        publish_with_media(site, form_id)
    collect = CollectEmulator(key_url(site.url, site.device_token, site.project))
    listed = {f.form_id: f for f in collect.form_list()}
    assert sorted(listed) == sorted(ODD_IDS)
    assert "%2F" in listed[SPECIALS].download_url and "%2F" in (listed[SPECIALS].manifest_url or "")
    downloaded = collect.download_forms()  # every form, manifest and media file, md5s checked
    assert {k: v.media for k, v in downloaded.items()} == {k: {"fruits.csv": FRUITS} for k in ODD_IDS}
    for n, form_id in enumerate(ODD_IDS):
        iid = f"{INSTANCE_ID}-{n}"
        sent = collect.submit(Instance(form_id, iid, submission_xml(form_id, iid)))
        assert sent.status == 201, (form_id, sent)
        assert counts(site.database, form_pk(site.database, site.project, form_id))["submissions"] == 1


BAD_FORM_IDS = ["a/../b", "..", "./x", "a\tb"]
# Encoded, as pyodk sends them (HTTP clients drop a bare "." or ".." segment themselves).
BAD_SEGMENTS = ["%2E%2E", "a%2F..%2Fb", "x%01y", "%2E"]
BAD_INSTANCE_IDS = ["uuid:a/../b", "..", "uuid:x\ty"]


def test_ids_with_dot_segments_or_control_characters_are_refused(site: Site) -> None:
    for bad_id in BAD_FORM_IDS:
        xml = form_xml(bad_id).replace(b"\t", b"&#9;")  # a tab survives an attribute only as a reference
        refused = requests.post(
            site.forms(), data=xml, headers={**site.auth, "Content-Type": "application/xml"}, timeout=30
        )
        assert refused.status_code == 400 and refused.json()["code"] == "400.8", (bad_id, refused.text)
    assert requests.get(site.forms(), headers=site.auth, timeout=10).json() == []

    device_forms = f"{key_url(site.url, site.device_token, site.project)}/forms"
    for path in BAD_SEGMENTS:
        api = requests.get(f"{site.forms()}/{path}/versions", headers=site.auth, timeout=10)
        assert api.status_code == 400 and api.json()["code"] == "400.1", (path, api.text)
        device = requests.get(f"{device_forms}/{path}/manifest", timeout=10)
        assert device.status_code == 400 and b"OpenRosaResponse" in device.content, path


def test_submissions_with_such_instance_ids_are_refused_and_nothing_is_kept(site: Site) -> None:
    publish_with_media(site, "plain")
    collect = CollectEmulator(key_url(site.url, site.device_token, site.project))
    for bad_iid in BAD_INSTANCE_IDS:
        xml = submission_xml("plain", bad_iid).replace(b"\t", b"&#9;")
        via_api = requests.post(
            f"{site.form('plain')}/submissions",
            data=xml,
            headers={**site.auth, "Content-Type": "application/xml"},
            timeout=30,
        )
        assert via_api.status_code == 400 and "instanceID" in via_api.json()["message"], via_api.text
        sent = collect.submit(Instance("plain", bad_iid, xml))
        assert sent.status == 400 and "instanceID" in (sent.message or ""), sent
    assert counts(site.database, form_pk(site.database, site.project, "plain")) == {
        "submissions": 0,
        "versions": 0,
        "conflicts": 0,
    }
