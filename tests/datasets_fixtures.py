"""Helpers of the datasets tests: publish forms, send submissions through the real ingest path, sign in.

Submissions go through ``server.ingest.ingest``, the one path every device, hub and bundle uses.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from server.datasets.schema import build_schema
from server.db import Database
from server.forms.publish import publish, source_from_xlsform
from server.ingest import ingest
from server.models import (
    AppUser,
    FormVersion,
    Project,
)
from server.projects import create_project
from server.users import create_user

PASSWORD = "correct horse battery"


def make_project(database: Database, name: str, **columns: Any) -> int:
    with database.write() as w:
        project = create_project(w.session, name)
        for key, value in columns.items():
            setattr(project, key, value)
        return project.id


def publish_form(database: Database, app: Any, project_id: int, data: bytes, filename: str,
                 media: Mapping[str, bytes] | None = None) -> int:  # fmt: skip
    """Publish an XLSForm (xlsx, or pyxform's markdown) through the real publishing code."""
    source = source_from_xlsform(data, settings=app.config["SARHAD"], filename=filename)
    with app.app_context(), database.write() as w:
        project = w.session.get(Project, project_id)
        assert project is not None
        return publish(w, project, source, dict(media or {})).form.id


def publish_file(database: Database, app: Any, project_id: int, path: Path) -> int:
    media = {p.name: p.read_bytes() for p in path.parent.glob("*.csv")}
    return publish_form(database, app, project_id, path.read_bytes(), path.name, media)


def make_app_user(database: Database, project_id: int, name: str, *, test: bool = False) -> int:
    with database.write() as w:
        user = AppUser(project_id=project_id, display_name=name, is_test=test)
        w.session.add(user)
        w.session.flush()
        return user.id


def submit(
    database: Database,
    app: Any,
    project_id: int,
    xml: str,
    attachments: Mapping[str, bytes] | None = None,
    *,
    app_user_id: int | None = None,
    device_id: str | None = "collect:test0000000000",
) -> Any:
    """Send one submission (and its files) through ingest; returns its IngestResult."""
    files = dict(attachments or {})
    with app.app_context(), database.write() as w:
        project = w.session.get(Project, project_id)
        app_user = w.session.get(AppUser, app_user_id) if app_user_id else None
        return ingest(
            w,
            project=project,
            xml_bytes=xml.encode("utf-8"),
            attachments=[(name, io.BytesIO(data)) for name, data in files.items()],
            incomplete=False,
            app_user=app_user,
            device_id=device_id,
        )


@dataclass
class WebUser:
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def web_user(live: Any, email: str, role: str, project_id: int | None) -> WebUser:
    with live.database.write() as w:
        project = w.session.get(Project, project_id) if project_id else None
        create_user(w.session, email, PASSWORD, role, project)
    reply = requests.post(f"{live.url}/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=30)
    reply.raise_for_status()
    return WebUser(email, reply.json()["token"])


# ------------------------------------------------------------------------- generated submissions


def _value(field: dict[str, Any], n: int, choices: dict[str, list[str]]) -> str:
    kind = field["type"]
    options = choices.get(field["path"])
    if kind in ("select1", "select") and options:
        return options[n % len(options)]
    name = field["name"].split(":")[-1]
    if kind == "int":
        return str(n % 50 + 1)
    if kind == "decimal":
        return f"{n % 7}.5"
    if kind == "date":
        return f"2026-0{n % 9 + 1}-1{n % 9}"
    if kind == "dateTime":
        return "2026-05-01T10:00:00.000+05:00"
    if kind == "time":
        return "10:00:00.000+05:00"
    if kind == "geopoint":
        return f"38.{n % 9}1 68.{n % 7}7 800 5"
    if kind in ("geotrace", "geoshape"):
        return "38.5 68.7 0 0;38.6 68.8 0 0;38.5 68.7 0 0"
    if kind == "binary":
        return f"{name}-{n}.jpg"
    if kind in ("select1", "select"):
        return "1"
    if name == "instanceID":
        return ""
    return f"{name} {n}"


def generated_instance(version: FormVersion, n: int, repeats: int = 2) -> tuple[str, str]:
    """(XML, instanceID) of a filled-in instance of ``version``: every leaf answered, each repeat twice."""
    fields = version.fields
    schema = build_schema(version.form.xml_form_id, [version])
    choices = {f.path: [c.value for c in f.choices] for f in schema.fields if f.choices}
    root = fields[0]["path"].split("/")[1] if fields else "data"
    instance_id = f"uuid:00000000-0000-4000-8000-{n:012d}"
    children: dict[str, list[dict[str, Any]]] = {}
    for f in fields:
        parent = f["path"].rsplit("/", 1)[0]
        children.setdefault(parent, []).append(f)

    def render(path: str) -> str:
        parts = []
        for f in children.get(path, []):
            tag = f["name"]
            if f["group"]:
                inner = render(f["path"])
                count = repeats if f["repeat"] else 1
                parts.append("".join(f"<{tag}>{inner}</{tag}>" for _ in range(count)))
            elif f["name"].split(":")[-1] == "instanceID":
                parts.append(f"<{tag}>{instance_id}</{tag}>")
            else:
                parts.append(f"<{tag}>{_value(f, n, choices)}</{tag}>")
        return "".join(parts)

    namespaces = (
        ' xmlns:orx="http://openrosa.org/xforms"' if "orx:" in "".join(f["path"] for f in fields) else ""
    )
    form_id = version.form.xml_form_id
    xml = f'<{root} id="{form_id}" version="{version.version}"{namespaces}>{render("/" + root)}</{root}>'
    return xml, instance_id
