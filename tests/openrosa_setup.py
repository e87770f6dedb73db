"""Server-side setup for the OpenRosa, ingest and crash tests: projects, published forms, devices.

Forms are published through the real publishing code (server.forms), devices are created through the
real app-user code (server.devices); the tests then talk to the server over HTTP (tests/collect_emulator)
or call the one ingest path directly.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from server.config import settings
from server.db import Database
from server.forms import publish, source_from_xform, source_from_xlsform
from server.models import (
    Conflict,
    Form,
    Project,
    Submission,
    SubmissionAttachment,
    SubmissionVersion,
)
from server.projects import create_project

FORMS_DIR = Path(__file__).resolve().parent.parent / "forms"

# A small form with a photo, a repeat and meta/audit: enough for every ingest branch.
SMALL_XFORM = """<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms"
        xmlns:odk="http://www.opendatakit.org/xforms">
  <h:head>
    <h:title>{title}</h:title>
    <model odk:xforms-version="1.0.0">
      <instance>
        <data id="{form_id}" version="{version}">
          <village/><count/><photo/>
          <visit jr:template=""><when/><note_photo/></visit>
          <meta><audit/><instanceID/><instanceName/></meta>
        </data>
      </instance>
      <bind nodeset="/data/village" type="string"/>
      <bind nodeset="/data/count" type="int"/>
      <bind nodeset="/data/photo" type="binary"/>
      <bind nodeset="/data/visit/when" type="date"/>
      <bind nodeset="/data/visit/note_photo" type="binary"/>
      <bind nodeset="/data/meta/audit" type="binary"/>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" jr:preload="uid"/>
      <bind nodeset="/data/meta/instanceName" type="string" calculate="/data/village"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/village"><label>Village</label></input>
    <input ref="/data/count"><label>How many</label></input>
    <upload ref="/data/photo" mediatype="image/*"><label>Photo</label></upload>
    <group ref="/data/visit"><label>Visit</label>
      <repeat nodeset="/data/visit">
        <input ref="/data/visit/when"><label>When</label></input>
        <upload ref="/data/visit/note_photo" mediatype="image/*"><label>Note</label></upload>
      </repeat>
    </group>
  </h:body>
</h:html>
"""


def small_xform(form_id: str = "small", version: str = "1", title: str = "Small form") -> bytes:
    return SMALL_XFORM.format(form_id=form_id, version=version, title=title).encode()


def small_instance(
    instance_id: str,
    *,
    form_id: str = "small",
    version: str = "1",
    village: str = "Vanj",
    photo: str | None = "photo.jpg",
    notes: tuple[str, ...] = (),
    audit: bool = False,
    deprecated_id: str | None = None,
) -> bytes:
    """A submission of ``small_xform``, as Collect writes it."""
    visits = "".join(
        f"<visit><when>2026-03-0{i + 1}</when><note_photo>{n}</note_photo></visit>"
        for i, n in enumerate(notes)
    )
    meta = "<audit>audit.csv</audit>" if audit else ""
    meta += f"<instanceID>{instance_id}</instanceID><instanceName>{village}</instanceName>"
    meta += f"<deprecatedID>{deprecated_id}</deprecatedID>" if deprecated_id else ""
    version_attr = f' version="{version}"' if version is not None else ""
    return (
        f"<?xml version='1.0' ?><data id=\"{form_id}\"{version_attr}>"
        f"<village>{village}</village><count>3</count><photo>{photo or ''}</photo>{visits}"
        f"<meta>{meta}</meta></data>"
    ).encode()


def new_uuid() -> str:
    return f"uuid:{uuid.uuid4()}"


def make_project(database: Database, name: str | None = None) -> int:
    with database.write() as w:
        return create_project(w.session, name or f"project {uuid.uuid4().hex[:8]}").id


def publish_xform(app: Flask, project_id: int, xml: bytes, media: Mapping[str, bytes] | None = None) -> int:
    database: Database = app.extensions["sarhad.db"]
    with app.app_context(), database.write() as w:
        project = w.session.get(Project, project_id)
        assert project is not None
        return publish(w, project, source_from_xform(xml, settings(app)), dict(media or {})).form.id


def publish_xlsform(app: Flask, project_id: int, path: Path, media: Mapping[str, bytes] | None = None) -> int:
    database: Database = app.extensions["sarhad.db"]
    source = source_from_xlsform(path.read_bytes(), settings(app), filename=path.name)
    if media is None:  # the mission forms keep their CSV lookups beside them
        media = {p.name: p.read_bytes() for p in path.parent.glob("*.csv")}
    wanted = set(source.info.media_names)
    with app.app_context(), database.write() as w:
        project = w.session.get(Project, project_id)
        assert project is not None
        chosen = {n: d for n, d in media.items() if n in wanted}
        return publish(w, project, source, chosen).form.id


def make_device(
    app: Flask, project_id: int, name: str | None = None, password: str | None = None
) -> tuple[int, str]:
    """An app user through server.devices: (id, token). With a password it signs in by Digest."""
    from server import devices

    database: Database = app.extensions["sarhad.db"]
    with app.app_context(), database.write() as w:
        project = w.session.get(Project, project_id)
        assert project is not None
        user, token = devices.create_app_user(
            w.session,
            project,
            name or f"tablet {uuid.uuid4().hex[:6]}",
            password=password,
            realm=settings(app).digest_realm,
        )
        return user.id, token


def key_url(base_url: str, token: str, project_id: int) -> str:
    """The server URL a device is configured with when its token is in the URL."""
    return f"{base_url}/v1/key/{token}/projects/{project_id}"


def digest_url(base_url: str, project_id: int) -> str:
    return f"{base_url}/v1/projects/{project_id}"


def form_pk(database: Database, project_id: int, xml_form_id: str) -> int:
    with database.read() as session:
        pk = session.scalar(
            select(Form.id).where(Form.project_id == project_id, Form.xml_form_id == xml_form_id)
        )
        assert pk is not None
        return pk


def counts(database: Database, form_id: int) -> dict[str, int]:
    """Rows of one form: submissions, versions, conflicts."""
    with database.read() as session:

        def count(model: Any) -> int:
            return (
                session.scalar(select(func.count()).select_from(model).where(model.form_id == form_id)) or 0
            )

        return {
            "submissions": count(Submission),
            "versions": count(SubmissionVersion),
            "conflicts": count(Conflict),
        }


def attachments_of(database: Database, form_id: int, instance_id: str) -> dict[str, str | None]:
    """name → blob sha256 (None while missing) of the version with this instanceID."""
    with database.read() as session:
        rows = session.execute(
            select(SubmissionAttachment.name, SubmissionAttachment.blob_sha256)
            .join(SubmissionVersion, SubmissionVersion.id == SubmissionAttachment.version_id)
            .where(SubmissionVersion.form_id == form_id, SubmissionVersion.instance_id == instance_id)
        )
        return {name: blob for name, blob in rows}


def streams(named: Mapping[str, bytes]) -> list[tuple[str, io.BytesIO]]:
    return [(name, io.BytesIO(data)) for name, data in named.items()]


def assert_no_staging_left(database: Database, seconds: float = 10) -> None:
    """Every staging folder is gone (a cut request's is removed once the server notices the cut)."""
    incoming = database.blobs.incoming
    deadline = time.monotonic() + seconds
    while any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(incoming.iterdir()), "a staging folder was left behind"
