"""Kept conflicts (Sarhad's own routes; ODK Central has none): list, read, decide.

- ``GET /v1/projects/{p}/conflicts[?all=true]`` — the conflicts of the project's forms, undecided ones
  only unless ``all=true``, newest first.
- ``GET /v1/projects/{p}/conflicts/{id}`` — one conflict: why it was kept, who sent it, its XML (redacted
  as the submission XML is for this requester), its files, the stored submission it collides with, and the
  decision once taken.
- ``POST /v1/projects/{p}/conflicts/{id}/decision`` with ``{"decision": "keep-stored" | "new-version" |
  "set-aside", "note": "..."}`` — records the decision once (a second one is 409). ``new-version`` stores
  the payload as the newest version of the stored submission through the one ingest path (an edit).
  Nothing is deleted; the decision is in the audit log (``submission.conflict.decide``).

Administrators and coordinators of the project only: a conflict holds a whole payload.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields, validate

from server import auth, conflicts, db
from server.api import api
from server.api.schemas import iso, load_json
from server.api.submissions import WRITE_ROLES
from server.datasets.redact import access_for
from server.datasets.redacted_xml import redacted_xml
from server.datasets.schema import load_schema
from server.models import Conflict, Form
from server.projects import find_project

BASE = "/projects/<int:project_id>/conflicts"


class DecisionRequest(Schema):
    decision = fields.String(required=True, validate=validate.OneOf([d.value for d in conflicts.Decision]))
    note = fields.String(load_default="", validate=validate.Length(max=2000))


def _json(conflict: Conflict, form: Form) -> dict[str, Any]:
    resolution = conflict.resolution or ""
    return {
        "id": conflict.id,
        "xmlFormId": form.xml_form_id,
        "instanceId": conflict.instance_id,
        "deprecatedId": conflict.deprecated_id,
        "reason": conflict.reason,
        "source": conflict.source,
        "receivedAt": iso(conflict.received_at),
        "attachments": [a.name for a in conflict.attachments],
        "decision": conflicts.decision_of(conflict),
        "newVersionOf": resolution.split(":", 1)[1] if ":" in resolution else None,
        "decidedAt": iso(conflict.resolved_at),
        "decidedBy": conflict.resolved_by_id,
    }


@api.get(BASE)
def list_conflicts(project_id: int) -> ResponseReturnValue:
    auth.require_project_role(project_id, *WRITE_ROLES)
    session = db.session()
    find_project(session, project_id)
    everything = request.args.get("all", "").lower() in ("true", "1")
    rows = conflicts.project_conflicts(session, project_id, open_only=not everything)
    return jsonify([_json(c, f) for c, f in rows])


@api.get(f"{BASE}/<int:conflict_id>")
def get_conflict(project_id: int, conflict_id: int) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    session = db.session()
    project = find_project(session, project_id)
    conflict, form = conflicts.find_conflict(session, project_id, conflict_id)
    access = access_for(session, user, project)
    stored = conflicts.stored_submission(session, conflict)
    body = _json(conflict, form)
    schema = load_schema(session, form)
    body["xml"] = redacted_xml(conflict.xml, schema, access, conflict.instance_id).decode("utf-8")
    body["storedInstanceId"] = stored.instance_id if stored else None
    return jsonify(body)


@api.post(f"{BASE}/<int:conflict_id>/decision")
@db.write_request
def decide_conflict(project_id: int, conflict_id: int) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    body = load_json(DecisionRequest())
    session = db.session()
    project = find_project(session, project_id)
    conflict, form = conflicts.find_conflict(session, project_id, conflict_id)
    conflicts.decide(db.writer(), project, conflict, body["decision"], user, note=body["note"], via="api")
    session.flush()
    return jsonify(_json(conflict, form))
