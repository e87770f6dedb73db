"""Helpers of the sync tests (no tests here): a small form with a photo, a hub store on SQLite, and
submissions sent through the one ingest path."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from server import create_app, migrate
from server.config import load_settings, settings
from server.db import Database
from server.forms.publish import publish, source_from_xform
from server.models import (
    Conflict,
    ConflictAttachment,
    Form,
    Project,
    SubmissionAttachment,
    SubmissionVersion,
)
from server.projects import create_project
from server.sync.hubs import create_hub
from tests.conftest import ROOT, AppEnv, DatabaseTarget

FORM_ID = "sync_survey"
FORM_XML = """<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head>
    <h:title>Sync survey</h:title>
    <model>
      <instance>
        <data id="{form_id}" version="{version}">
          <village/>
          <photo/>
          <meta><instanceID/><deprecatedID/></meta>
        </data>
      </instance>
      <bind nodeset="/data/village" type="string"/>
      <bind nodeset="/data/photo" type="binary"/>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" jr:preload="uid"/>
      <bind nodeset="/data/meta/deprecatedID" type="string"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/village"><label>Village</label>{hint}</input>
    <upload mediatype="image/*" ref="/data/photo"><label>Photo</label></upload>
  </h:body>
</h:html>
"""


def form_xml(form_id: str = FORM_ID, version: str = "1", image: str | None = None) -> bytes:
    """The survey's XForm; ``image`` names a media file it uses (jr://images/...)."""
    hint = f"<hint>jr://images/{image}</hint>" if image else ""
    return FORM_XML.format(form_id=form_id, version=version, hint=hint).encode("utf-8")


def instance_xml(
    instance_id: str, village: str, photo: str | None = None, *, deprecated: str | None = None,
    form_id: str = FORM_ID, version: str = "1",
) -> bytes:  # fmt: skip
    meta = f"<instanceID>{instance_id}</instanceID>"
    if deprecated:
        meta += f"<deprecatedID>{deprecated}</deprecatedID>"
    return (
        f'<data xmlns:orx="http://openrosa.org/xforms" id="{form_id}" version="{version}">'
        f"<village>{village}</village><photo>{photo or ''}</photo><meta>{meta}</meta></data>"
    ).encode()


def new_id() -> str:
    return f"uuid:{uuid.uuid4()}"


def sqlite_env(data_dir: Path) -> AppEnv:
    """A hub's store: SQLite in its data dir, whatever database the suite runs on."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = DatabaseTarget(f"sqlite:///{data_dir / 'sarhad.db'}")
    migrate.upgrade(target.url)
    return AppEnv(data_dir, target)


@dataclass
class Store:
    """A store (hub or central) opened in this process."""

    env: AppEnv
    settings: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        self.app = create_app(
            load_settings(
                overrides={
                    "data_dir": self.env.data_dir,
                    "database_url": self.env.target.url,
                    "log_level": "WARNING",
                    **(self.settings or {}),
                },
                environ={},
            )
        )

    @property
    def database(self) -> Database:
        return self.app.extensions["sarhad.db"]  # type: ignore[no-any-return]

    def project(self, name: str) -> int:
        with self.database.write() as w:
            found = w.session.scalar(select(Project).where(Project.name == name))
            return (found or create_project(w.session, name)).id

    def publish(self, project_id: int, xml: bytes, media: Mapping[str, bytes] | None = None) -> None:
        with self.app.app_context(), self.database.write() as w:
            project = w.session.get(Project, project_id)
            assert project is not None
            publish(w, project, source_from_xform(xml, settings(self.app)), dict(media or {}))

    def hub_token(self, name: str, project_id: int) -> str:
        with self.database.write() as w:
            project = w.session.get(Project, project_id)
            assert project is not None
            return create_hub(w.session, name, [project])[1]

    def submit(
        self,
        project_id: int,
        xml: bytes,
        files: Mapping[str, bytes] | None = None,
        device: str = "collect:tablet0001",
    ) -> str:
        from server.ingest import ingest

        with self.app.app_context(), self.database.write() as w:
            project = w.session.get(Project, project_id)
            result = ingest(
                w,
                project=project,
                xml_bytes=xml,
                attachments=[(n, io.BytesIO(d)) for n, d in (files or {}).items()],
                incomplete=False,
                device_id=device,
            )
            return str(getattr(result.outcome, "value", result.outcome))

    def holdings(self) -> set[tuple[str, str, str, str, frozenset[tuple[str, str]]]]:
        """(kind, formId, instanceID, sha256, attachments) of every version and kept conflict."""
        found: set[tuple[str, str, str, str, frozenset[tuple[str, str]]]] = set()
        with self.database.read() as session:
            for v in session.scalars(select(SubmissionVersion)):
                files = session.execute(
                    select(SubmissionAttachment.name, SubmissionAttachment.blob_sha256).where(
                        SubmissionAttachment.version_id == v.id, SubmissionAttachment.blob_sha256.is_not(None)
                    )
                ).all()
                form = session.get(Form, v.form_id)
                assert form is not None
                found.add(
                    (
                        "version",
                        form.xml_form_id,
                        v.instance_id,
                        v.sha256,
                        frozenset((n, s) for n, s in files),
                    )
                )
            for c in session.scalars(select(Conflict)):
                files = session.execute(
                    select(ConflictAttachment.name, ConflictAttachment.blob_sha256).where(
                        ConflictAttachment.conflict_id == c.id
                    )
                ).all()
                form = session.get(Form, c.form_id)
                assert form is not None
                found.add(
                    (
                        "conflict",
                        form.xml_form_id,
                        c.instance_id,
                        c.sha256,
                        frozenset((n, s) for n, s in files),
                    )
                )
        return found


def photo(n: int, size: int) -> bytes:
    """Incompressible bytes, like a JPEG, different for each n."""
    seed = hashlib.sha256(f"photo-{n}".encode()).digest()
    return (seed * (size // 32 + 1))[:16] + os.urandom(size - 16)


def sync_env(central_url: str, token: str, hub_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARHAD_")}
    env.update(
        {
            "SARHAD_SYNC_CENTRAL_URL": central_url,
            "SARHAD_SYNC_TOKEN": token,
            "SARHAD_SYNC_HUB_DATA_DIR": str(hub_dir),
            **extra,
        }
    )
    return env


def run_sync(
    env: Mapping[str, str], *args: str, timeout: float = 120, in_process: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``sarhad-sync`` with ``env``: its real entry point ``sync_client.cli.main`` in this process
    (fast), or the installed command in a child process."""
    if not in_process:
        return subprocess.run(
            [sys.executable, "-m", "sync_client.cli", *args],
            env=dict(env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    from sync_client.cli import main

    saved = {k: v for k, v in os.environ.items() if k.startswith("SARHAD_")}
    out, err = io.StringIO(), io.StringIO()
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if k.startswith("SARHAD_")})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        for key in [k for k in os.environ if k.startswith("SARHAD_")]:
            del os.environ[key]
        os.environ.update(saved)
    return subprocess.CompletedProcess(["sarhad-sync", *args], code, out.getvalue(), err.getvalue())


def start_sync(env: Mapping[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sync_client.cli", *args],
        env=dict(env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
