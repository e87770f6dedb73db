"""Managed encryption in ODK Central's shape.

- ``POST /v1/projects/{p}/key`` ``{"passphrase", "hint"}`` (project administrators): make the project's key
  and publish every form with it (``server.project_keys``); the reply is the project, with its ``keyId``.
  A second call is 409.4: it cannot be changed or turned off.
- ``GET /v1/projects/{p}/forms/{f}/submissions/keys`` (any role in the project): the managed keys of the
  form's versions, ``[{id, public, managed, hint, createdAt}]``: what to give a passphrase for.
"""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue

from server import auth, db
from server.api import api
from server.api.projects import project_json
from server.api.schemas import KeyRequest, iso, load_json
from server.forms.publish import find_form
from server.models import Role
from server.project_keys import enable_managed_encryption, keys_for_form
from server.projects import find_project


@api.post("/projects/<int:project_id>/key")
@db.write_request
def post_project_key(project_id: int) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, Role.ADMIN)
    body = load_json(KeyRequest())
    session = db.session()
    project = find_project(session, project_id)
    enable_managed_encryption(session, project, body["passphrase"], body["hint"], user, via="api")
    return jsonify(project_json(project))


@api.get("/projects/<int:project_id>/forms/<xml_form_id>/submissions/keys")
def get_submission_keys(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    auth.require_project_role(project_id)
    session = db.session()
    form = find_form(session, find_project(session, project_id).id, xml_form_id)
    return jsonify(
        [
            {
                "id": k.id,
                "public": k.public,
                "managed": k.managed,
                "hint": k.hint,
                "createdAt": iso(k.created_at),
            }
            for k in keys_for_form(session, form)
        ]
    )
