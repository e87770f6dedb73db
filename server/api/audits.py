"""``GET /v1/audits``: the audit log in ODK Central's shape, for site administrators.

Each event is ``{actorId, action, acteeId, details, loggedAt, notes}``, newest first. Central's actors
share one id space; Sarhad's web users and devices do not, so ``actorType`` (``user`` or ``field_key``)
says which ``actorId`` is, and ``acteeType`` what ``acteeId`` names (a user id, a form's xmlFormId, a
submission's row id, ...). With ``X-Extended-Metadata: true`` each event carries ``actor`` and
``actee`` objects beside the ids, as Central's ExtendedAudit. No route changes or removes an event.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, auth, db
from server.api import api
from server.api.app_users import app_user_json
from server.api.assignments import user_actor_json
from server.api.forms import form_json
from server.api.projects import project_json
from server.api.schemas import AuditQueryArgs, iso, load_query
from server.models import AppUser, AuditEvent, Form, Project, User


def event_json(event: AuditEvent) -> dict[str, Any]:
    actor_type = "user" if event.actor_user_id else "field_key" if event.actor_app_user_id else None
    return {
        "id": event.id,
        "actorId": event.actor_user_id or event.actor_app_user_id,
        "actorType": actor_type,
        "action": event.action,
        "acteeId": event.target_id,
        "acteeType": event.target_type,
        "projectId": event.project_id,
        "details": event.details or None,
        "notes": None,
        "loggedAt": iso(event.at),
    }


def _actee(session: Session, event: AuditEvent) -> dict[str, Any] | None:
    """The object an event acted on, as the API shows it elsewhere (None when it is not a user, device,
    project or form, or no longer exists)."""
    ident = event.target_id
    if ident is None:
        return None
    if event.target_type == "user" and ident.isdigit():
        user = session.get(User, int(ident))
        return user_actor_json(user) if user else None
    if event.target_type == "app_user" and ident.isdigit():
        device = session.get(AppUser, int(ident))
        return app_user_json(device) if device else None
    if event.target_type == "project" and ident.isdigit():
        project = session.get(Project, int(ident))
        return project_json(project) if project else None
    if event.target_type == "form" and event.project_id is not None:
        form = session.scalar(
            select(Form).where(Form.project_id == event.project_id, Form.xml_form_id == ident)
        )
        return form_json(form, form.current_version) if form else None
    return None


def extended_json(session: Session, event: AuditEvent) -> dict[str, Any]:
    shown = event_json(event)
    actor: dict[str, Any] | None = None
    if event.actor_user_id:
        user = session.get(User, event.actor_user_id)
        actor = user_actor_json(user) if user else None
    elif event.actor_app_user_id:
        device = session.get(AppUser, event.actor_app_user_id)
        actor = app_user_json(device) if device else None
    shown["actor"] = actor
    shown["actee"] = _actee(session, event)
    return shown


@api.get("/audits")
def list_audits() -> ResponseReturnValue:
    auth.require_site_admin()
    args = load_query(AuditQueryArgs())
    query = audit.AuditQuery(
        action=args["action"], start=args["start"], end=args["end"], actor_user_id=args["actor_id"]
    )
    session = db.session()
    events = audit.find(session, query, limit=args["limit"], offset=args["offset"])
    if request.headers.get("X-Extended-Metadata", "").strip().lower() == "true":
        return jsonify([extended_json(session, e) for e in events])
    return jsonify([event_json(e) for e in events])
