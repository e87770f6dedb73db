"""Hub credentials: created by an administrator on central, shown once, stored hashed, revocable.

A hub may push to and pull forms from exactly the projects it was created for (``--project``, one or
more); it holds no other right: it cannot read submissions, users or exports.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, errors, signin_limits
from server.models import Hub, Project, User, utcnow

TOKEN_PREFIX = "hub_"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_hub(
    session: Session, name: str, projects: Sequence[Project], actor: User | None = None
) -> tuple[Hub, str]:
    """A new hub and its token (the only time the token is known in clear)."""
    name = name.strip()
    if not name:
        raise errors.bad_request("A hub needs a name.")
    if not projects:
        raise errors.bad_request("Name at least one project the hub may push to (--project).")
    if session.scalar(select(Hub).where(Hub.name == name)) is not None:
        raise errors.conflict(f"A hub named {name!r} already exists; revoke it or choose another name.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(40)
    hub = Hub(name=name, token_sha256=token_sha256(token), created_by_id=actor.id if actor else None)
    hub.projects = list(projects)
    session.add(hub)
    session.flush()
    audit.record(
        session,
        "hub.create",
        actor=actor,
        target_type="hub",
        target_id=hub.id,
        name=name,
        projects=[p.id for p in projects],
    )
    return hub, token


def find_hub(session: Session, ref: str) -> Hub:
    hub = session.get(Hub, int(ref)) if ref.isdigit() else None
    if hub is None:
        hub = session.scalar(select(Hub).where(Hub.name == ref))
    if hub is None:
        raise errors.not_found(f"There is no hub {ref!r}.")
    return hub


def revoke_hub(session: Session, hub: Hub, actor: User | None = None) -> bool:
    """Revoke the hub's token; False when it was already revoked."""
    if hub.revoked_at is not None:
        return False
    hub.revoked_at = utcnow()
    audit.record(session, "hub.revoke", actor=actor, target_type="hub", target_id=hub.id, name=hub.name)
    return True


def authenticate_hub(session: Session, authorization: str) -> Hub:
    """The hub an ``Authorization: Bearer <hub token>`` header names, or a 401 Problem."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise errors.unauthenticated("This needs a hub token: Authorization: Bearer <token>.")
    hub = session.scalar(select(Hub).where(Hub.token_sha256 == token_sha256(value.strip())))
    if hub is None:
        raise signin_limits.device_credential_failed(
            session, errors.unauthenticated("The hub token is unknown.")
        )
    if hub.revoked_at is not None:
        raise errors.unauthenticated("The hub token was revoked.")
    return hub


def allowed_project(hub: Hub, project_id: int) -> Project:
    """The project if the hub may use it, else 403 (a hub learns nothing about other projects)."""
    for project in hub.projects:
        if project.id == project_id and not project.archived:
            return project
    raise errors.forbidden(f"Hub {hub.name!r} may not push to project {project_id}.")
