"""``sarhad-sync pull-device DIR``: instances from a Collect storage folder, into the hub (through the
one ingest path, as the tablet would have sent them) or straight to central (like a push)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from server.errors import Problem
from server.models import Project, Source
from sync_client.client import ExitCode, SyncError
from sync_client.config import SyncConfig
from sync_client.folder import FolderScan, FolderStore, scan
from sync_client.hubstore import HubWriter


@dataclass
class DeviceReport:
    scan: FolderScan
    outcomes: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    push_text: str = ""
    exit_code: int = ExitCode.OK


def _hub_project(hub: HubWriter, name: str | None) -> int:
    with hub.database.read() as session:
        projects = session.execute(select(Project.id, Project.name).where(Project.archived.is_(False))).all()
    if name:
        for project_id, project_name in projects:
            if project_name == name or str(project_id) == name:
                return int(project_id)
        raise SyncError(f"the hub has no project {name!r}", ExitCode.USAGE)
    if len(projects) != 1:
        raise SyncError(
            "say which of the hub's projects these instances belong to (--project)", ExitCode.USAGE
        )
    return int(projects[0][0])


def pull_device(
    config: SyncConfig, folder: Path, to: str, project: str | None, device_id: str | None, quiet: bool
) -> DeviceReport:
    found = scan(folder)
    if not found.roots:
        raise SyncError(
            f"{folder} holds no Collect storage (looked for odk/, "
            "Android/data/org.odk.collect.android/files/ and files/projects/<uuid>/, "
            "each with an instances/ folder)",
            ExitCode.USAGE,
        )
    device = device_id or f"folder:{folder.resolve().name}"
    report = DeviceReport(found)
    if to == "central":
        from sync_client import push

        if not project:
            raise SyncError("say which central project these instances belong to (--project)", ExitCode.USAGE)
        result = push.push(config, quiet=quiet, store=FolderStore(found, project, device))
        report.push_text, report.exit_code = push.describe(result), result.exit_code
        return _count_unreadable(report)
    config.require("hub_data_dir")
    hub = HubWriter(config)
    try:
        target = _hub_project(hub, project)
        from server.ingest import ingest

        for inst in found.instances:
            try:
                with hub.write() as w:
                    row = w.session.get(Project, target)
                    files = [(name, io.BytesIO(path.read_bytes())) for name, path in inst.files.items()]
                    result = ingest(
                        w,
                        project=row,
                        xml_bytes=inst.xml,
                        attachments=files,
                        incomplete=False,
                        source=Source.FOLDER,
                        source_detail=str(folder)[:255],
                        device_id=device,
                        user_agent="sarhad-sync pull-device",
                    )
                outcome = str(getattr(result.outcome, "value", result.outcome))
                report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
            except Problem as problem:
                report.refused.append((inst.folder, problem.message))
    finally:
        hub.close()
    if report.refused:
        report.exit_code = ExitCode.INCOMPLETE
    return _count_unreadable(report)


def _count_unreadable(report: DeviceReport) -> DeviceReport:
    """An instance whose XML does not parse was skipped: it is not at central, so the run cannot end 0
    (exit 5, listed by :func:`describe`). A worse outcome (central unreachable, token refused) stays."""
    if report.scan.unreadable and report.exit_code == ExitCode.OK:
        report.exit_code = ExitCode.INCOMPLETE
    return report


def describe(report: DeviceReport) -> str:
    found = report.scan
    lines = [f"found {len(found.instances)} finalised instance(s) in:"]
    lines += [f"  {root.path} ({root.layout})" for root in found.roots]
    if report.outcomes:
        lines.append("into the hub: " + ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items())))
    if report.push_text:
        lines.append(report.push_text)
    for folder, message in report.refused:
        lines.append(f"  refused: {folder.name}: {message}")
    if found.drafts:
        lines.append(
            f"drafts never finalised on the tablet (not sent; finalise them in Collect): {len(found.drafts)}"
        )
        lines += [f"  {path.name}" for path in found.drafts]
    if not found.status_known:
        lines.append(
            "note: Collect's metadata/instances.db was not in the copy, so drafts cannot be told apart; "
            "every instance was taken as finalised"
        )
    for folder, reason in found.unreadable:
        lines.append(f"  skipped {folder.name}: {reason}")
    return "\n".join(lines)
