"""``/v1/projects/{p}/app-users``, as ODK Central has them (their form assignments: ``assignments.py``)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields
from sqlalchemy import select

from server import auth, config, db, devices
from server.api import api
from server.api.schemas import iso, load_json
from server.models import AppUser
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
