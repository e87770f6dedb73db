"""``sarhad-sync pull-forms``: central → hub. Every published version of every form of the hub's
projects, with its media, published on the hub through its own publishing code, so that the hub's
tablets see new or updated forms at their next form-list refresh (same XForm bytes, same md5 hash)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from server.entities import mirror
from server.errors import Problem
from server.forms.publish import find_form, publish, set_state, source_from_xform
from server.models import Blob, Form, FormVersion, Project
from server.projects import create_project
from sync_client.client import CentralClient, ExitCode, SyncError
from sync_client.config import SyncConfig
from sync_client.hubstore import HubWriter


@dataclass
class PullReport:
    published: list[str] = field(default_factory=list)
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)
    media_downloaded: int = 0
    entities_updated: int = 0

    @property
    def exit_code(self) -> int:
        return ExitCode.INCOMPLETE if self.problems else ExitCode.OK


def pull_forms(config: SyncConfig) -> PullReport:
    config.require("central_url", "token", "hub_data_dir")
    client = CentralClient(config)
    info = client.get("/v1/sync/hub")
    hub = HubWriter(config)
    report = PullReport()
    try:
        for project in info["projects"]:
            listing = client.get(f"/v1/sync/projects/{project['id']}/forms")
            hub_project = _hub_project(hub, project["name"])
            # Lists first: a form reading <list>.csv is linked to the list when it is published.
            _pull_entity_lists(hub, hub_project, listing.get("entityLists", []), report)
            for form in listing["forms"]:
                _pull_form(client, hub, project["id"], hub_project, form, report)
    finally:
        hub.close()
    return report


def _pull_entity_lists(
    hub: HubWriter, hub_project: int, payload: list[dict[str, Any]], report: PullReport
) -> None:
    if not payload:
        return
    with hub.write() as w:
        project = w.session.get(Project, hub_project)
        assert project is not None
        report.entities_updated += mirror.import_lists(w.session, project, payload)


def _hub_project(hub: HubWriter, name: str) -> int:
    with hub.write() as w:
        found = w.session.scalar(select(Project).where(Project.name == name))
        return (found or create_project(w.session, name)).id


def _pull_form(
    client: CentralClient, hub: HubWriter, central_project: int, hub_project: int, form: dict[str, Any],
    report: PullReport,
) -> None:  # fmt: skip
    form_id = form["xmlFormId"]
    for version in form["versions"]:
        with hub.database.read() as session:
            have = session.scalar(
                select(FormVersion.sha256)
                .join(Form, Form.id == FormVersion.form_id)
                .where(
                    Form.project_id == hub_project,
                    Form.xml_form_id == form_id,
                    FormVersion.version == version["version"],
                    FormVersion.published_at.is_not(None),
                )
            )
        media_complete = True
        if have == version["sha256"]:
            media_complete = _hub_has_media(hub, hub_project, form_id, version)
            if media_complete:
                report.unchanged += 1
                continue
        try:
            media = _media(client, hub, central_project, version, report)
            with hub.write() as w:
                project = w.session.get(Project, hub_project)
                assert project is not None
                source = source_from_xform(version["xml"].encode("utf-8"), hub.settings)
                outcome = publish(w, project, source, media, via="sync")
            report.published.append(outcome.message)
        except Problem as problem:
            report.problems.append(f"{form_id} version {version['version']!r}: {problem.message}")
    with hub.write() as w:
        try:
            hub_form = find_form(w.session, hub_project, form_id)
        except Problem:
            return
        if hub_form.state != form["state"]:
            set_state(w.session, hub_form, form["state"], None, via="sync")
        current = w.session.scalar(
            select(FormVersion).where(
                FormVersion.form_id == hub_form.id,
                FormVersion.version == (form["currentVersion"] or ""),
                FormVersion.published_at.is_not(None),
            )
        )
        if current is not None and hub_form.current_version_id != current.id:
            hub_form.current_version_id = current.id


def _hub_has_media(hub: HubWriter, hub_project: int, form_id: str, version: dict[str, Any]) -> bool:
    wanted = {m["name"]: m["sha256"] for m in version["media"] if m["sha256"]}
    if not wanted:
        return True
    with hub.database.read() as session:
        form = session.scalar(select(Form).where(Form.project_id == hub_project, Form.xml_form_id == form_id))
        if form is None:
            return False
        row = session.scalar(
            select(FormVersion).where(
                FormVersion.form_id == form.id, FormVersion.version == version["version"]
            )
        )
        have = {m.name: m.blob_sha256 for m in row.media} if row is not None else {}
    return all(have.get(name) == sha for name, sha in wanted.items())


def _media(
    client: CentralClient, hub: HubWriter, central_project: int, version: dict[str, Any], report: PullReport
) -> dict[str, bytes]:
    media: dict[str, bytes] = {}
    for item in version["media"]:
        sha = item["sha256"]
        if not sha:
            continue  # central lacks it too: the hub will list it as missing, like central does
        with hub.database.read() as session:
            local = session.get(Blob, sha) is not None
        if local:
            media[item["name"]] = hub.database.blobs.read_bytes(sha)
            continue
        data = client.download(f"/v1/sync/projects/{central_project}/media/{sha}")
        if hashlib.sha256(data).hexdigest() != sha:
            raise SyncError(
                f"the media file {item['name']} arrived damaged; run pull-forms again", ExitCode.ERROR
            )
        media[item["name"]] = data
        report.media_downloaded += 1
    return media


def describe(report: PullReport) -> str:
    lines = [f"forms: {len(report.published)} published or updated, {report.unchanged} already up to date"]
    lines += [f"  {message}" for message in report.published]
    lines += [f"  problem: {message}" for message in report.problems]
    if report.entities_updated:
        lines.append(f"  entities brought up to date from central: {report.entities_updated}")
    if report.media_downloaded:
        lines.append(f"  media files downloaded: {report.media_downloaded}")
    return "\n".join(lines)
