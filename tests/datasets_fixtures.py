"""Helpers of the datasets tests: publish forms, send submissions through the real ingest path, sign in.

Submissions go through ``server.ingest.ingest``, the one path every device, hub and bundle uses.
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from server.config import settings
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
from tests.collect_emulator import fill, read_form

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
    source = source_from_xlsform(data, settings=settings(app), filename=filename)
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


def generated_instance(
    version: FormVersion, n: int, media: Mapping[str, bytes] | None = None
) -> tuple[str, str, dict[str, bytes]]:
    """(XML, instanceID, files) of a filled-in instance of ``version``, by the Collect emulator's filler:
    every field a value of its type (files for photos), each repeat twice."""
    form = read_form(version.xml.encode("utf-8"), media)
    instance = fill(form, rng=random.Random(n), repeat_rows=2)
    return instance.xml.decode("utf-8"), instance.instance_id, dict(instance.files)
