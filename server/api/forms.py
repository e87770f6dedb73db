"""``/v1/projects/{p}/forms``: publish and read forms in ODK Central's shape (pyodk works unmodified).

Uploads (``POST .../forms`` and ``POST .../forms/{f}/draft``) take an XLSForm body (Content-Type
``application/vnd.openxmlformats-officedocument.spreadsheetml.sheet`` for .xlsx,
``application/vnd.ms-excel`` for .xls; ``text/csv`` and ``text/markdown`` for pyxform's text forms) with
an optional ``X-XlsForm-FormId-Fallback`` header, or an XForm body (``application/xml``, ``text/xml``).
Without ``?publish=true`` an upload is a draft: not served to devices until ``.../draft/publish``. Media
are uploaded to the draft (``POST .../draft/attachments/{name}``); a draft starts with the files of the
published version that it still references.

Converting a spreadsheet can take a minute, so upload views check the caller's role, convert *outside*
any transaction, and only then open the one write transaction that checks the role again and stores
everything (``_store`` below); a slow conversion never holds the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from flask import Response, g, jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from server import auth, config, db, errors
from server.api import api
from server.api.schemas import iso, load_json
from server.config import Settings
from server.entities.attachment import list_file
from server.forms.convert import XLSFORM_CONTENT_TYPES
from server.forms.publish import (
    FormSource,
    Outcome,
    attach_to_draft,
    discard_draft,
    draft_from_current,
    find_draft,
    find_form,
    publish,
    publish_draft,
    published_versions,
    save_draft,
    set_state,
    source_from_xform,
    source_from_xlsform,
)
from server.models import Form, FormMedia, FormState, FormVersion, ProjectKey
from server.projects import find_project
from server.url_ids import id_problem

WRITE_ROLES = ("admin", "coordinator")
XML_CONTENT_TYPES = {"application/xml", "text/xml"}
_MEDIA_KINDS = {"image": "image", "audio": "audio", "video": "video"}


class FormStateRequest(Schema):
    state = fields.String(required=True, validate=validate.OneOf([s.value for s in FormState]))


def _settings() -> Settings:
    return config.settings()


def _flag(name: str) -> bool:
    return request.args.get(name, "").strip().lower() in {"true", "1", "yes"}


# ---- JSON shapes -------------------------------------------------------------------------------------


def form_json(form: Form, version: FormVersion | None) -> dict[str, Any]:
    """A form as Central writes it: every key pyodk reads is present, null when unknown."""
    return {
        "projectId": form.project_id,
        "xmlFormId": form.xml_form_id,
        "name": (version.title or None) if version else None,  # null when the XForm has no title
        "version": version.version if version else None,
        "hash": version.md5 if version else None,
        "sha256": version.sha256 if version else None,
        "state": form.state,
        "enketoId": None,
        "enketoOnceId": None,
        "keyId": key_id_of(version),
        "encrypted": bool(version and version.public_key),
        "createdAt": iso(form.created_at),
        "updatedAt": iso(form.updated_at),
        "publishedAt": iso(version.published_at) if version else None,
    }


def key_id_of(version: FormVersion | None) -> int | None:
    """The managed key a version is encrypted with (Central's form ``keyId``); None otherwise."""
    if version is None or version.public_key is None:
        return None
    return db.session().scalar(select(ProjectKey.id).where(ProjectKey.public == version.public_key))


def _shown_version(form: Form) -> FormVersion | None:
    # Central describes a never-published form by its draft.
    return form.current_version or find_draft(db.session(), form)


def _media_kind(row: FormMedia) -> str:
    major = (row.content_type or "").split("/")[0]
    return _MEDIA_KINDS.get(major, "file")


def attachment_json(row: FormMedia) -> dict[str, Any]:
    return {
        "name": row.name,
        "type": _media_kind(row),
        "exists": row.blob_sha256 is not None or row.entity_list_id is not None,
        "blobExists": row.blob_sha256 is not None,
        "datasetExists": row.entity_list_id is not None,
        "hash": row.blob.md5 if row.blob else None,
        "updatedAt": iso(row.blob.created_at) if row.blob else None,
    }


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    body = form_json(outcome.form, outcome.version)
    # Central answers draft and publish calls with {"success": true} (pyodk reads it); Sarhad adds what
    # happened, in words and in fields. Clients written for Central ignore the extra keys.
    body.update(
        success=True,
        outcome=outcome.status,
        message=outcome.message,
        warnings=outcome.warnings,
        missingMedia=outcome.missing_media,
    )
    return body


def _xml_response(xml: str) -> Response:
    return Response(xml.encode("utf-8"), content_type="application/xml; charset=utf-8")


# ---- uploads -----------------------------------------------------------------------------------------


def _authorize_upload(project_id: int) -> None:
    """Check the role before spending a conversion on the request, then end the read transaction:
    the conversion may take a minute and nothing should be held open meanwhile. The role is checked
    again inside the write transaction (the cached user is dropped so that it is read there)."""
    auth.require_project_role(project_id, *WRITE_ROLES)
    db.session().rollback()
    g.pop("current_user", None)


def _read_upload(required: bool = True) -> FormSource | None:
    """The request body as a converted, parsed form (None for an empty body when allowed)."""
    data = request.get_data(cache=False)
    if not data:
        if required:
            raise errors.invalid_form("The request has no form in its body.")
        return None
    mimetype = request.mimetype.lower()
    settings = _settings()
    if mimetype in XML_CONTENT_TYPES:
        return source_from_xform(data, settings)
    file_type = XLSFORM_CONTENT_TYPES.get(mimetype)
    if file_type is None:
        accepted = ", ".join(sorted({*XML_CONTENT_TYPES, *XLSFORM_CONTENT_TYPES}))
        raise errors.bad_request(
            f"Unsupported Content-Type {mimetype or '(none)'!r} for a form: use one of {accepted}.",
            accepted=sorted({*XML_CONTENT_TYPES, *XLSFORM_CONTENT_TYPES}),
        )
    # Central's header, percent-encoded by pyodk: the form id when the settings sheet names none.
    fallback = request.headers.get("X-XlsForm-FormId-Fallback")
    fallback = unquote(fallback).strip() if fallback else None
    if fallback and (why := id_problem(fallback)):
        raise errors.bad_request(f"X-XlsForm-FormId-Fallback is not a usable form id: {why}.")
    filename = f"{fallback.replace('/', '_')}{file_type}" if fallback else None
    return source_from_xlsform(data, settings, filename=filename, file_type=file_type, fallback_id=fallback)


@db.write_request
def _store(project_id: int, action: Callable[..., Outcome], *args: Any, **kwargs: Any) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    project = find_project(db.session(), project_id)
    outcome = action(db.writer(), project, *args, actor=user, **kwargs)
    return jsonify(_outcome_json(outcome))


@api.post("/projects/<int:project_id>/forms")
def create_form(project_id: int) -> ResponseReturnValue:
    """Upload a form: a draft, or published at once with ``?publish=true`` (version rules apply)."""
    _authorize_upload(project_id)
    source = _read_upload()
    assert source is not None
    if _flag("publish"):
        return _store(project_id, publish, source)
    return _store(project_id, save_draft, source)


@api.post("/projects/<int:project_id>/forms/<xml_form_id>/draft")
def create_form_draft(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    """A new draft from the body, or (empty body) a copy of the published version."""
    _authorize_upload(project_id)
    source = _read_upload(required=False)
    if source is None:
        return _copy_to_draft(project_id, xml_form_id)
    return _store(project_id, _draft_of, source, xml_form_id)


def _draft_of(writer: Any, project: Any, source: FormSource, xml_form_id: str, actor: Any) -> Outcome:
    find_form(writer.session, project.id, xml_form_id, lock=True)
    return save_draft(writer, project, source, actor=actor, expected_form_id=xml_form_id)


@db.write_request
def _copy_to_draft(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    form = find_form(db.session(), project_id, xml_form_id, lock=True)
    return jsonify(_outcome_json(draft_from_current(db.writer(), form, user)))


@api.post("/projects/<int:project_id>/forms/<xml_form_id>/draft/publish")
@db.write_request
def publish_form_draft(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    form = find_form(db.session(), project_id, xml_form_id, lock=True)
    version = request.args.get("version")
    if version is not None and (not version.strip() or len(version) > 255):
        raise errors.bad_request("The version must be 1 to 255 characters.")
    outcome = publish_draft(db.writer(), form, user, new_version=version)
    return jsonify(_outcome_json(outcome))


@api.delete("/projects/<int:project_id>/forms/<xml_form_id>/draft")
@db.write_request
def delete_form_draft(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    discard_draft(db.writer(), find_form(db.session(), project_id, xml_form_id, lock=True), user)
    return jsonify({"success": True})


@api.post("/projects/<int:project_id>/forms/<xml_form_id>/draft/attachments/<name>")
@db.write_request
def upload_form_draft_attachment(project_id: int, xml_form_id: str, name: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    form = find_form(db.session(), project_id, xml_form_id, lock=True)
    row = attach_to_draft(db.writer(), form, name, request.stream, user)
    return jsonify({"success": True, **attachment_json(row)})


@api.patch("/projects/<int:project_id>/forms/<xml_form_id>")
@db.write_request
def update_form(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    body = load_json(FormStateRequest())
    form = find_form(db.session(), project_id, xml_form_id, lock=True)
    set_state(db.session(), form, body["state"], user)
    return jsonify(form_json(form, _shown_version(form)))


# ---- reads -------------------------------------------------------------------------------------------


def _readable_form(project_id: int, xml_form_id: str, *roles: str) -> Form:
    """The form, for a user with one of ``roles`` in its project (any role when none given); the role is
    checked first, so that a 403 says nothing about which forms exist."""
    auth.require_project_role(project_id, *roles)
    find_project(db.session(), project_id)
    return find_form(db.session(), project_id, xml_form_id)


@api.get("/projects/<int:project_id>/forms")
def list_forms(project_id: int) -> ResponseReturnValue:
    auth.require_project_role(project_id)
    project = find_project(db.session(), project_id)
    forms = db.session().scalars(
        select(Form).where(Form.project_id == project.id, Form.deleted_at.is_(None)).order_by(Form.id)
    )
    return jsonify([form_json(form, _shown_version(form)) for form in forms])


@api.get("/projects/<int:project_id>/forms/<xml_form_id>")
def get_form(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    return jsonify(form_json(form, _shown_version(form)))


@api.get("/projects/<int:project_id>/forms/<xml_form_id>.xml")
def get_form_xml(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    if form.current_version is None:
        raise errors.not_found(f"The form {xml_form_id!r} has no published version (only a draft).")
    return _xml_response(form.current_version.xml)


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/versions")
def list_form_versions(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    return jsonify([form_json(form, v) for v in published_versions(db.session(), form)])


def _version(form: Form, version: str) -> FormVersion:
    found = next((v for v in published_versions(db.session(), form) if v.version == version), None)
    if found is None:
        raise errors.not_found(f"The form {form.xml_form_id!r} has no published version {version!r}.")
    return found


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>")
def get_form_version(project_id: int, xml_form_id: str, version: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    return jsonify(form_json(form, _version(form, version)))


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>.xml")
def get_form_version_xml(project_id: int, xml_form_id: str, version: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    return _xml_response(_version(form, version).xml)


def draft_of(form: Form) -> FormVersion:
    draft = find_draft(db.session(), form)
    if draft is None:
        raise errors.not_found(f"The form {form.xml_form_id!r} has no draft.")
    return draft


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/draft")
def get_form_draft(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    return jsonify(form_json(form, draft_of(form)))


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/draft.xml")
def get_form_draft_xml(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return _xml_response(draft_of(_readable_form(project_id, xml_form_id)).xml)


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/attachments")
def list_form_attachments(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    if form.current_version is None:
        raise errors.not_found(f"The form {xml_form_id!r} has no published version (only a draft).")
    return jsonify([attachment_json(m) for m in form.current_version.media])


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/draft/attachments")
def list_form_draft_attachments(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    # The draft's media are being prepared by those who publish: admins and coordinators (README).
    form = _readable_form(project_id, xml_form_id, *WRITE_ROLES)
    return jsonify([attachment_json(m) for m in draft_of(form).media])


def attachment_file(version: FormVersion | None, name: str) -> Response:
    row = next((m for m in version.media if m.name == name), None) if version else None
    if row is not None and row.blob_sha256 is None and row.entity_list_id is not None:
        made = list_file(db.session(), row.entity_list_id)
        return Response(made.data, content_type="text/csv; charset=utf-8")
    if row is None or row.blob_sha256 is None:
        raise errors.not_found(f"There is no uploaded media file named {name!r}.")
    data = db.database().blobs.read_bytes(row.blob_sha256)
    return Response(data, content_type=row.content_type or "application/octet-stream")


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/attachments/<name>")
def get_form_attachment(project_id: int, xml_form_id: str, name: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    return attachment_file(form.current_version, name)


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/draft/attachments/<name>")
def get_form_draft_attachment(project_id: int, xml_form_id: str, name: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id, *WRITE_ROLES)
    return attachment_file(draft_of(form), name)
