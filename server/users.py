"""Web users and their roles."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server import audit, errors
from server.auth import find_active_user, hash_password
from server.models import Project, ProjectRole, Role, User

MIN_PASSWORD_LENGTH = 10


def create_user(
    session: Session,
    email: str,
    password: str,
    role: str,
    project: Project | None = None,
    display_name: str | None = None,
    actor: User | None = None,
) -> User:
    """A web user. ``admin`` without a project is a site administrator; other roles need a project."""
    email = email.strip().lower()
    if "@" not in email:
        raise errors.bad_request(f"{email!r} is not an e-mail address.")
    if role not in set(Role):
        raise errors.bad_request(f"Unknown role {role!r}: use admin, coordinator or analyst.")
    if project is None and role != Role.ADMIN:
        raise errors.bad_request(f"The {role} role belongs to a project: give the project.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise errors.bad_request(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if find_active_user(session, email) is not None:
        raise errors.conflict(f"A user {email} already exists.")
    user = User(
        email=email,
        display_name=display_name or email.split("@")[0],
        password_hash=hash_password(password),
        is_site_admin=project is None,
    )
    session.add(user)
    session.flush()
    if project is not None:
        session.add(ProjectRole(user_id=user.id, project_id=project.id, role=role))
    audit.record(
        session,
        "user.create",
        actor=actor,
        project_id=project.id if project else None,
        target_type="user",
        target_id=user.id,
        role=role,
    )
    return user


def grant_role(session: Session, user: User, project: Project, role: str, actor: User | None = None) -> None:
    if role not in set(Role):
        raise errors.bad_request(f"Unknown role {role!r}: use admin, coordinator or analyst.")
    existing = session.get(ProjectRole, (user.id, project.id))
    if existing is None:
        session.add(ProjectRole(user_id=user.id, project_id=project.id, role=role))
    else:
        existing.role = role
    audit.record(
        session,
        "user.role",
        actor=actor,
        project_id=project.id,
        target_type="user",
        target_id=user.id,
        role=role,
    )
