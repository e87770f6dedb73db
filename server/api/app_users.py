"""``/v1/projects/{p}/app-users`` and form assignments, as ODK Central has them."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields
from sqlalchemy import select

from server import audit, auth, config, db, devices, errors
from server.api import api
from server.api.schemas import iso, load_json
from server.forms.publish import find_form
from server.models import AppUser, FormAssignment
from server.projects import find_project

WRITERS = ("admin", "coordinator")


class AppUserRequest(Schema):
    displayName = fields.String(required=True)
    password = fields.String(load_default=None, allow_none=True)


def app_user_json(app_user: AppUser, token: str | None = None) -> dict[str, Any]:
    return {
        "id": app_user.id,
        "type": "field_key",
        "displayName": app_user.display_name,
        "projectId": app_user.project_id,
        "token": token,
        "hasPassword": app_user.digest_ha1 is not None,
        "isTest": app_user.is_test,
        "createdAt": iso(app_user.created_at),
        "updatedAt": None,
        "revokedAt": iso(app_user.revoked_at),
        "deletedAt": iso(app_user.revoked_at),
    }


@api.get("/projects/<int:project_id>/app-users")
def list_app_users(project_id: int) -> ResponseReturnValue:
    auth.require_project_role(project_id, *WRITERS)
    find_project(db.session(), project_id)  # 404 for a project that does not exist
    rows = db.session().scalars(select(AppUser).where(AppUser.project_id == project_id).order_by(AppUser.id))
    return jsonify([app_user_json(a) for a in rows])


@api.post("/projects/<int:project_id>/app-users")
@db.write_request
def create_app_user(project_id: int) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITERS)
    body = load_json(AppUserRequest())
    project = find_project(db.session(), project_id)
    realm = config.settings().digest_realm
    app_user, token = devices.create_app_user(
        db.session(), project, body["displayName"], password=body["password"], realm=realm, actor=user
    )
    return jsonify(app_user_json(app_user, token))


@api.delete("/projects/<int:project_id>/app-users/<int:app_user_id>")
@db.write_request
def revoke_app_user(project_id: int, app_user_id: int) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITERS)
    project = find_project(db.session(), project_id)
    devices.revoke_app_user(db.session(), devices.find_app_user(db.session(), project, app_user_id), user)
    return jsonify({"success": True})


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/assignments/app-user")
def list_assignments(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    auth.require_project_role(project_id, *WRITERS)
    form = find_form(db.session(), project_id, xml_form_id)
    rows = db.session().scalars(
        select(AppUser)
        .join(FormAssignment, FormAssignment.app_user_id == AppUser.id)
        .where(FormAssignment.form_id == form.id)
        .order_by(AppUser.id)
    )
    return jsonify([app_user_json(a) for a in rows])


def _assignment_target(project_id: int, xml_form_id: str, app_user_id: int) -> tuple[Any, AppUser]:
    session = db.session()
    form = find_form(session, project_id, xml_form_id)
    app_user = devices.find_app_user(session, find_project(session, project_id), app_user_id)
    return form, app_user


@api.post("/projects/<int:project_id>/forms/<xml_form_id>/assignments/app-user/<int:app_user_id>")
@db.write_request
def assign_app_user(project_id: int, xml_form_id: str, app_user_id: int) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITERS)
    form, app_user = _assignment_target(project_id, xml_form_id, app_user_id)
    session = db.session()
    if session.get(FormAssignment, (app_user.id, form.id)) is None:
        session.add(FormAssignment(app_user_id=app_user.id, form_id=form.id))
        audit.record(
            session,
            "app_user.assign",
            actor=user,
            project_id=project_id,
            target_type="form",
            target_id=form.id,
            app_user_id=app_user.id,
        )
    return jsonify({"success": True})


@api.delete("/projects/<int:project_id>/forms/<xml_form_id>/assignments/app-user/<int:app_user_id>")
@db.write_request
def unassign_app_user(project_id: int, xml_form_id: str, app_user_id: int) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITERS)
    form, app_user = _assignment_target(project_id, xml_form_id, app_user_id)
    session = db.session()
    row = session.get(FormAssignment, (app_user.id, form.id))
    if row is None:
        raise errors.not_found("This app user is not assigned to this form.")
    session.delete(row)
    audit.record(
        session,
        "app_user.unassign",
        actor=user,
        project_id=project_id,
        target_type="form",
        target_id=form.id,
        app_user_id=app_user.id,
    )
    return jsonify({"success": True})
