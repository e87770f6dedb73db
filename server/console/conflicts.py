"""Conflicts of a project: the list, one kept payload beside the stored submission field by field (both
read through the one reader, labelled and redacted as the submission page does), its files, and the
coordinator's decision (:mod:`server.conflicts`). Coordinators and administrators only, as the API."""

from __future__ import annotations

from dataclasses import dataclass

from flask import redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from server import auth, conflicts, db, errors
from server.api.exports import content_disposition
from server.api.submissions import WRITE_ROLES, FormAccess, form_access
from server.console import console
from server.console.session import require_signed_in
from server.console.submissions import _shown
from server.datasets.reader import UnreadableXml, read
from server.datasets.redacted_xml import shown_attachment_names
from server.datasets.schema import FormSchema
from server.models import Conflict, ConflictAttachment, SubmissionAttachment, User
from server.projects import find_project


def decision_label(decision: str | None) -> str:
    return {
        conflicts.Decision.KEEP_STORED: _("Kept the stored submission"),
        conflicts.Decision.NEW_VERSION: _("Taken as a new version"),
        conflicts.Decision.SET_ASIDE: _("Set aside"),
    }.get(decision or "", _("Waiting for a decision"))


def reason_label(reason: str) -> str:
    return {
        "instance_id_taken": _("Another submission with the same ID"),
        "stale_edit": _("An edit of an older version"),
        "unknown_deprecated": _("An edit of a submission this server does not have"),
        "attachment_differs": _("A file with the same name but other content"),
    }.get(reason, reason)


@console.get("/projects/<int:project_id>/conflicts")
def conflicts_page(project_id: int) -> ResponseReturnValue:
    require_signed_in()
    auth.require_project_role(project_id, *WRITE_ROLES)
    session = db.session()
    project = find_project(session, project_id)
    show_all = request.args.get("all") == "1"
    rows = conflicts.project_conflicts(session, project_id, open_only=not show_all)
    return render_template(
        "conflicts.html",
        project=project,
        rows=rows,
        show_all=show_all,
        decision_of=conflicts.decision_of,
        decision_label=decision_label,
        reason_label=reason_label,
    )


@dataclass
class Line:
    label: str
    stored: str
    kept: str

    @property
    def differs(self) -> bool:
        return self.stored != self.kept


@dataclass
class Block:
    title: str | None
    lines: list[Line]


def _values(
    xml: str | None, schema: FormSchema, instance_id: str
) -> dict[tuple[str | None, str], dict[str, str | None]]:
    if xml is None:
        return {}
    try:
        return {(row.table, row.key): row.values for row in read(xml, schema.by_rel, instance_id)}
    except UnreadableXml:
        return {}


def compare(fa: FormAccess, stored: str | None, kept: str, instance_id: str, lang: str) -> list[Block]:
    """The two payloads side by side: one block per row (the submission, then each repeat instance)."""
    schema = fa.schema(db.session())
    left, right = _values(stored, schema, instance_id), _values(kept, schema, instance_id)
    blocks = []
    for key in dict.fromkeys([*left, *right]):
        table = key[0]
        a, b = left.get(key, {}), right.get(key, {})
        lines = [
            Line(
                f.label(lang) or f.name, _shown(fa, f, a.get(f.rel), lang), _shown(fa, f, b.get(f.rel), lang)
            )
            for f in schema.table_fields(table)
            if (f.rel in a or f.rel in b) and not f.rel.startswith("/meta/")
        ]
        title = None
        if table is not None:
            repeat = schema.by_rel.get(table)
            title = f"{(repeat.label(lang) if repeat else None) or table} — {key[1].rsplit('/', 1)[-1]}"
        blocks.append(Block(title, lines))
    return blocks


def _conflict_access(project_id: int, conflict_id: int) -> tuple[FormAccess, Conflict]:
    require_signed_in()
    auth.require_project_role(project_id, *WRITE_ROLES)
    conflict, form = conflicts.find_conflict(db.session(), project_id, conflict_id)
    return form_access(project_id, form.xml_form_id, *WRITE_ROLES), conflict


def _files(fa: FormAccess, xml: str | None, names: list[str]) -> list[tuple[str, bool]]:
    """(name, may be opened) of each file: files only personal questions name stay closed, as in the API."""
    if xml is None:
        return []
    allowed = shown_attachment_names(xml, fa.schema(db.session()), fa.access)
    return [(n, allowed is None or n.split("~", 1)[0] in allowed) for n in names]


@console.get("/projects/<int:project_id>/conflicts/<int:conflict_id>")
def conflict_page(project_id: int, conflict_id: int) -> ResponseReturnValue:
    from server.console.submissions import _lang

    fa, conflict = _conflict_access(project_id, conflict_id)
    session = db.session()
    sub = conflicts.stored_submission(session, conflict)
    current = sub.current_version if sub else None
    stored_files = [a.name for a in current.attachments if a.blob_sha256] if current is not None else []
    decider = session.get(User, conflict.resolved_by_id) if conflict.resolved_by_id else None
    return render_template(
        "conflict.html",
        project=fa.project,
        form=fa.form,
        conflict=conflict,
        sub=sub,
        current=current,
        blocks=compare(fa, current.xml if current else None, conflict.xml, conflict.instance_id, _lang()),
        kept_files=_files(fa, conflict.xml, [a.name for a in conflict.attachments]),
        stored_files=_files(fa, current.xml if current else None, stored_files),
        decision=conflicts.decision_of(conflict),
        decision_label=decision_label,
        reason_label=reason_label,
        decider=decider.display_name if decider else None,
        redacted=not fa.access.raw,
    )


@console.post("/projects/<int:project_id>/conflicts/<int:conflict_id>/decision")
@db.write_request
def decide_conflict(project_id: int, conflict_id: int) -> ResponseReturnValue:
    fa, conflict = _conflict_access(project_id, conflict_id)
    decided = conflicts.decide(
        db.writer(),
        fa.project,
        conflict,
        request.form.get("decision", ""),
        fa.user,
        note=request.form.get("note", "").strip(),
        via="console",
    )
    return redirect(url_for("console.conflict_page", project_id=project_id, conflict_id=decided.conflict_id))


@console.get("/projects/<int:project_id>/conflicts/<int:conflict_id>/files/<side>/<name>")
def conflict_file(project_id: int, conflict_id: int, side: str, name: str) -> ResponseReturnValue:
    fa, conflict = _conflict_access(project_id, conflict_id)
    session = db.session()
    sha: str | None = None
    xml: str | None = None
    if side == "kept":
        sha = session.scalar(
            select(ConflictAttachment.blob_sha256).where(
                ConflictAttachment.conflict_id == conflict.id, ConflictAttachment.name == name
            )
        )
        xml = conflict.xml
    elif side == "stored":
        sub = conflicts.stored_submission(session, conflict)
        current = sub.current_version if sub else None
        if current is not None:
            xml = current.xml
            sha = session.scalar(
                select(SubmissionAttachment.blob_sha256).where(
                    SubmissionAttachment.version_id == current.id, SubmissionAttachment.name == name
                )
            )
    if sha is None or xml is None or not dict(_files(fa, xml, [name])).get(name):
        raise errors.not_found(_("There is no such file."))
    response = send_file(db.database().blobs.open(sha), mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = content_disposition(name.split("~", 1)[0])
    return response
