"""``/v1/projects/{p}/forms/{f}/submissions``: ODK Central's submissions API (pyodk works unmodified).

- Reading (list, one submission, its XML, versions, attachments) needs a role in the project:
  analyst, coordinator or admin. What a role may see of personal data is decided once per request by
  :func:`server.datasets.redact.access_for`: for a redacted role the XML has personal values replaced
  (pseudonyms, coarsened points, dropped text), device ids and submitter names are pseudonymised,
  ``instanceName`` (often built from a name) is null, and files that only personal questions name are
  neither listed nor served.
- Review state (``PATCH``), new submissions (``POST`` of an XML body) and edits (``PUT``), both through
  the one ingest path as the signed-in user, and attachment uploads need coordinator or admin; any role
  may comment. Review changes, comments and received files are in the audit log. A file posted on its own
  goes through ingest too: it never replaces one already held (the other bytes go to the conflict store).
- A submission is addressed by the instanceID it was first sent with (an edit keeps that address); the
  list includes every submission not deleted, test ones too (datasets and OData leave those out).
- ``reviewState`` is ``null`` until someone reviews the submission, as in Central; ``received`` may be
  PATCHed to put a submission back to that state.
- ``submitterId`` is the app user (device) that sent the first version, or the web user for API
  submissions, or 0 when neither is known (a submission copied in from a folder); pyodk needs a number.
  App users and web users are numbered separately: ``submitter.type`` says which it is.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify, request, send_file, stream_with_context
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from server import audit, auth, config, db, errors
from server.api import api
from server.api.schemas import iso, load_json
from server.datasets import NEWEST_FIRST
from server.datasets.odata_rows import review_state_json
from server.datasets.redact import Access, access_for, pseudonym
from server.datasets.redacted_xml import redacted_xml, shown_attachment_names
from server.datasets.schema import FormSchema, load_schema
from server.entities.from_submissions import apply_approval
from server.forms.publish import find_form
from server.models import (
    AppUser,
    Comment,
    Form,
    Project,
    ReviewState,
    Role,
    Source,
    Submission,
    SubmissionAttachment,
    SubmissionVersion,
    User,
    utcnow,
)
from server.projects import find_project

READ_ROLES = (Role.ADMIN, Role.COORDINATOR, Role.ANALYST)
WRITE_ROLES = (Role.ADMIN, Role.COORDINATOR)
MAX_COMMENT_CHARS = 10_000
UNKNOWN_SUBMITTER = 0

BASE = "/projects/<int:project_id>/forms/<xml_form_id>/submissions"


class ReviewRequest(Schema):
    reviewState = fields.String(required=True, validate=validate.OneOf([s.value for s in ReviewState]))


class CommentRequest(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=MAX_COMMENT_CHARS))


# ---- who may see what ---------------------------------------------------------------------------------


@dataclass
class FormAccess:
    """One request's form, its project, the requester and what the requester may see."""

    form: Form
    project: Project
    user: User
    access: Access
    _schema: FormSchema | None = None

    def schema(self, session: Session) -> FormSchema:
        if self._schema is None:
            self._schema = load_schema(session, self.form)
        return self._schema


def form_access(project_id: int, xml_form_id: str, *roles: str) -> FormAccess:
    """Check the role first (403 before 404, so that no-one learns which forms exist), then find."""
    user = auth.require_project_role(project_id, *(roles or READ_ROLES))
    session = db.session()
    project = find_project(session, project_id)
    form = find_form(session, project_id, xml_form_id)
    return FormAccess(form, project, user, access_for(session, user, project))


def find_submission(session: Session, form: Form, instance_id: str) -> Submission:
    found = session.scalar(
        select(Submission).where(
            Submission.form_id == form.id,
            Submission.instance_id == instance_id,
            Submission.deleted_at.is_(None),
        )
    )
    if found is None or found.current_version is None:
        raise errors.not_found(f"There is no submission {instance_id!r} of this form.")
    return found


def _audit(session: Session, action: str, fa: FormAccess, sub: Submission, **details: Any) -> None:
    """An audit row about one submission, by the web user of this request."""
    audit.record(
        session,
        action,
        actor=fa.user,
        project_id=fa.form.project_id,
        target_type="submission",
        target_id=sub.id,
        form=fa.form.xml_form_id,
        instance_id=sub.instance_id,
        **details,
    )


# ---- JSON shapes --------------------------------------------------------------------------------------


def _submitter_id(version: SubmissionVersion) -> int:
    if version.app_user_id is not None:
        return version.app_user_id
    if version.user_id is not None:
        return version.user_id
    return UNKNOWN_SUBMITTER


def _submitter(session: Session, version: SubmissionVersion, access: Access) -> dict[str, Any] | None:
    if version.app_user_id is not None:
        app_user = session.get(AppUser, version.app_user_id)
        name = app_user.display_name if app_user else None
        return {"type": "appUser", "id": version.app_user_id, "displayName": shown_identity(access, name)}
    if version.user_id is not None:
        user = session.get(User, version.user_id)
        name = user.display_name if user else None
        return {"type": "user", "id": version.user_id, "displayName": shown_identity(access, name)}
    return None


def shown_identity(access: Access, value: str | None) -> str | None:
    """Device ids and app-user names identify people too: a redacted role sees their pseudonyms (the
    same ones the exports carry)."""
    if access.raw or not value:
        return value
    return pseudonym(access.key, value)


def version_json(version: SubmissionVersion, current: bool, access: Access) -> dict[str, Any]:
    return {
        "instanceId": version.instance_id,
        "instanceName": version.instance_name if access.raw else None,
        "submitterId": _submitter_id(version),
        "deviceId": shown_identity(access, version.device_id),
        "userAgent": version.user_agent,
        "createdAt": iso(version.received_at),
        "current": current,
    }


def submission_json(session: Session, sub: Submission, access: Access) -> dict[str, Any]:
    version = sub.current_version
    assert version is not None
    first = sub.versions[0] if sub.versions else version
    return _submission_dict(sub, version, first, access, _submitter(session, first, access))


def _submission_dict(
    sub: Submission,
    version: SubmissionVersion,
    first: SubmissionVersion,
    access: Access,
    submitter: dict[str, Any] | None,
) -> dict[str, Any]:
    """Central's submission JSON; the submitter and device are those of the first version."""
    return {
        "instanceId": sub.instance_id,
        "submitterId": _submitter_id(first),
        "deviceId": shown_identity(access, first.device_id),
        "userAgent": first.user_agent,
        "instanceName": version.instance_name if access.raw else None,
        "reviewState": review_state_json(sub.review_state),
        "createdAt": iso(sub.created_at),
        "updatedAt": iso(sub.updated_at),
        "deletedAt": iso(sub.deleted_at),
        "currentVersion": version_json(version, True, access),
        # Sarhad's additions (Central clients ignore them): who sent it, and how it arrived.
        "submitter": submitter,
        "source": version.source,
    }


# ---- reading ------------------------------------------------------------------------------------------


LIST_BATCH = 500


@api.get(BASE)
def list_submissions(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    """Every submission of the form, newest first: one query, streamed ``LIST_BATCH`` rows at a time."""
    fa = form_access(project_id, xml_form_id)
    form_id, access = fa.form.id, fa.access
    current, first = aliased(SubmissionVersion), aliased(SubmissionVersion)
    first_id = (
        select(func.min(SubmissionVersion.id))
        .where(SubmissionVersion.submission_id == Submission.id)
        .correlate(Submission)
        .scalar_subquery()
    )
    stmt = (
        select(Submission, current, first)
        .join(current, current.id == Submission.current_version_id)
        .join(first, first.id == first_id)
        .where(Submission.form_id == form_id, Submission.deleted_at.is_(None))
        .order_by(*NEWEST_FIRST)
        .execution_options(yield_per=LIST_BATCH)
    )

    def generate() -> Iterator[str]:
        yield "["
        with db.database().read() as session:
            submitters: dict[tuple[int | None, int | None], dict[str, Any] | None] = {}
            for n, (sub, version, first_version) in enumerate(session.execute(stmt)):
                who = (first_version.app_user_id, first_version.user_id)
                if who not in submitters:
                    submitters[who] = _submitter(session, first_version, access)
                body = _submission_dict(sub, version, first_version, access, submitters[who])
                yield ("," if n else "") + json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        yield "]"

    return Response(stream_with_context(generate()), content_type="application/json; charset=utf-8")


@api.get(f"{BASE}/<instance_id>")
def get_submission(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    session = db.session()
    return jsonify(submission_json(session, find_submission(session, fa.form, instance_id), fa.access))


@api.get(f"{BASE}/<instance_id>.xml")
def get_submission_xml(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    assert sub.current_version is not None
    body = redacted_xml(sub.current_version.xml, fa.schema(session), fa.access)
    return Response(body, content_type="application/xml; charset=utf-8")


@api.get(f"{BASE}/<instance_id>/versions")
def submission_list_versions(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    sub = find_submission(db.session(), fa.form, instance_id)
    return jsonify(
        [version_json(v, v.id == sub.current_version_id, fa.access) for v in reversed(sub.versions)]
    )


@api.get(f"{BASE}/<instance_id>/versions/<version_id>.xml")
def submission_get_version_xml(
    project_id: int, xml_form_id: str, instance_id: str, version_id: str
) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    version = next((v for v in sub.versions if v.instance_id == version_id), None)
    if version is None:
        raise errors.not_found(f"Submission {instance_id!r} has no version {version_id!r}.")
    body = redacted_xml(version.xml, fa.schema(session), fa.access)
    return Response(body, content_type="application/xml; charset=utf-8")


# ---- review and comments ------------------------------------------------------------------------------


@api.patch(f"{BASE}/<instance_id>")
@db.write_request
def review_submission(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id, *WRITE_ROLES)
    body = load_json(ReviewRequest())
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    before = sub.review_state
    if before != body["reviewState"]:
        sub.review_state = body["reviewState"]
        sub.updated_at = utcnow()
        _audit(
            session,
            "submission.review",
            fa,
            sub,
            before=before,
            after=sub.review_state,
        )
        if sub.review_state == ReviewState.APPROVED:
            apply_approval(session, project_id, sub, xml_form_id, fa.user)
    session.flush()
    return jsonify(submission_json(session, sub, fa.access))


def comment_json(comment: Comment) -> dict[str, Any]:
    return {"body": comment.body, "actorId": comment.user_id, "createdAt": iso(comment.created_at)}


@api.get(f"{BASE}/<instance_id>/comments")
def submission_list_comments(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    rows = session.scalars(select(Comment).where(Comment.submission_id == sub.id).order_by(Comment.id))
    return jsonify([comment_json(c) for c in rows])


@api.post(f"{BASE}/<instance_id>/comments")
@db.write_request
def submission_add_comment(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    body = load_json(CommentRequest())
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    comment = Comment(submission_id=sub.id, user_id=fa.user.id, body=body["body"], created_at=utcnow())
    session.add(comment)
    session.flush()
    _audit(
        session,
        "submission.comment",
        fa,
        sub,
        comment_id=comment.id,
    )
    return jsonify(comment_json(comment))


# ---- attachments --------------------------------------------------------------------------------------


def _attachments(sub: Submission) -> list[SubmissionAttachment]:
    assert sub.current_version is not None
    return list(sub.current_version.attachments)


@api.get(f"{BASE}/<instance_id>/attachments")
def submission_list_attachments(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    assert sub.current_version is not None
    shown = shown_attachment_names(sub.current_version.xml, fa.schema(session), fa.access)
    return jsonify(
        [
            {"name": a.name, "exists": a.blob_sha256 is not None}
            for a in _attachments(sub)
            if shown is None or a.name in shown
        ]
    )


@api.get(f"{BASE}/<instance_id>/attachments/<name>")
def submission_get_attachment(
    project_id: int, xml_form_id: str, instance_id: str, name: str
) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    assert sub.current_version is not None
    shown = shown_attachment_names(sub.current_version.xml, fa.schema(session), fa.access)
    row = next((a for a in _attachments(sub) if a.name == name), None)
    if row is None or row.blob_sha256 is None:
        raise errors.not_found(f"Submission {instance_id!r} has no received file named {name!r}.")
    if shown is not None and name not in shown:
        raise errors.forbidden(f"{name} belongs to a personal-data question; your role may not download it.")
    path = db.database().blobs.path(row.blob_sha256)
    if not path.exists():
        raise errors.stored_file_missing(name)
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return send_file(path, mimetype=mimetype, as_attachment=True, download_name=name, etag=row.blob_sha256)


@api.post(f"{BASE}/<instance_id>/attachments/<name>")
@db.write_request
def submission_upload_attachment(
    project_id: int, xml_form_id: str, instance_id: str, name: str
) -> ResponseReturnValue:
    """A file of the current version, sent on its own, through the one ingest path: a file not received
    yet is stored; the same bytes again are a success; other bytes for a file already held are kept
    beside it in the conflict store (409, committed), never in its place."""
    from server.ingest import add_late_file

    fa = form_access(project_id, xml_form_id, *WRITE_ROLES)
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    version = sub.current_version
    assert version is not None
    row = next((a for a in _attachments(sub) if a.name == name), None)
    if row is None:
        raise errors.not_found(f"Submission {instance_id!r} does not name a file {name!r}.")
    before = row.blob_sha256
    # pyodk sends the file with chunked transfer encoding (no Content-Length): request.stream reads
    # it to its end, within MAX_CONTENT_LENGTH, and the blob store copies it to disk chunk by chunk.
    result = add_late_file(
        db.writer(),
        project_id=fa.project.id,
        version=version,
        name=name,
        stream=request.stream,
        user=fa.user,
        user_agent=request.headers.get("User-Agent"),
    )
    session.refresh(row)
    if name in result.differing:
        assert result.conflict is not None
        return errors.render(
            errors.attachment_differs(name, instance_id, conflict_id=result.conflict.id, held=before)
        )
    if before is None and row.blob_sha256 is not None:
        _audit(session, "submission.attachment", fa, sub, name=name, sha256=row.blob_sha256, replaced=None)
    return jsonify({"success": True})


# ---- new submissions ----------------------------------------------------------------------------------


def _settings_max_xml() -> int:
    return config.settings().max_xml_bytes


def _ingest_body(fa: FormAccess, edit_of: str | None = None) -> ResponseReturnValue:
    """Ingest the request's XML body for ``fa.form`` as the signed-in web user; answer Central's JSON.

    A conflict (same instanceID, other XML) is kept by ingest in this transaction: the view returns a
    409 *response* (so that the transaction commits and the payload is kept) instead of raising.
    """
    from server.ingest import ingest
    from server.ingest.parse import parse_submission

    xml = request.get_data(cache=False)
    if not xml.strip():
        raise errors.bad_request("The request body must be the submission XML.")
    parsed = parse_submission(xml, _settings_max_xml())
    if parsed.form_id != fa.form.xml_form_id:
        raise errors.bad_request(
            f"This XML is a submission to the form {parsed.form_id!r}, not to {fa.form.xml_form_id!r}.",
            form=parsed.form_id,
        )
    if edit_of is not None and parsed.deprecated_id is None:
        raise errors.bad_request(
            "An edit must name the version it replaces in <meta><deprecatedID>.", field="deprecatedID"
        )
    result = ingest(
        db.writer(),
        project=fa.project,
        xml_bytes=xml,
        incomplete=False,
        source=Source.API,
        user=fa.user,
        device_id=request.args.get("deviceID"),
        user_agent=request.headers.get("User-Agent"),
    )
    if not result.accepted:
        return errors.render(result.problem())
    session = db.session()
    session.flush()
    sub = result.submission
    if sub is None:  # pragma: no cover - an accepted payload always has its submission
        sub = find_submission(session, fa.form, parsed.instance_id)
    if edit_of is not None and sub.instance_id != edit_of:
        raise errors.bad_request(
            f"This edit belongs to submission {sub.instance_id!r}, not to {edit_of!r}.", field="deprecatedID"
        )
    if edit_of is not None:  # Central's action for a new version of a submission
        _audit(
            session,
            "submission.update.version",
            fa,
            sub,
            version_instance_id=parsed.instance_id,
            deprecated_id=parsed.deprecated_id,
        )
    session.expire(sub)
    return jsonify(submission_json(session, sub, fa.access))


@api.post(BASE)
@db.write_request
def create_submission(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    """A submission sent as an XML body (pyodk's ``submissions.create``), through the one ingest path.
    Its files follow with ``POST .../attachments/{name}``."""
    return _ingest_body(form_access(project_id, xml_form_id, *WRITE_ROLES))


@api.put(f"{BASE}/<instance_id>")
@db.write_request
def edit_submission(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    """An edited version (pyodk's ``submissions.edit``): new instanceID, ``deprecatedID`` = the one it
    replaces. Stored as a new version of the same submission by the one ingest path."""
    fa = form_access(project_id, xml_form_id, *WRITE_ROLES)
    find_submission(db.session(), fa.form, instance_id)
    return _ingest_body(fa, edit_of=instance_id)
