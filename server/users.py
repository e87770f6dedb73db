"""Web users and their roles."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server import audit, errors
from server.auth import find_active_user, hash_password
from server.models import Project, ProjectRole, Role, User, WebSession

LANGUAGES = ("tg", "ru", "en")

MIN_PASSWORD_LENGTH = 10


def create_user(
    session: Session,
    email: str,
    password: str,
    role: str | None,
    project: Project | None = None,
    display_name: str | None = None,
    actor: User | None = None,
    language: str | None = None,
) -> User:
    """A web user. ``admin`` without a project is a site administrator; other roles need a project;
    no role (None) makes a user whom an administrator gives roles later."""
    email = email.strip().lower()
    if "@" not in email:
        raise errors.bad_request(f"{email!r} is not an e-mail address.")
    if role is not None and role not in set(Role):
        raise errors.bad_request(f"Unknown role {role!r}: use admin, coordinator or analyst.")
    if project is None and role not in (Role.ADMIN, None):
        raise errors.bad_request(f"The {role} role belongs to a project: give the project.")
    _check_password(password)
    if language is not None and language not in LANGUAGES:
        raise errors.bad_request(f"Unknown language {language!r}: use tg, ru or en.")
    if find_active_user(session, email) is not None:
        raise errors.conflict(f"A user {email} already exists.")
    user = User(
        email=email,
        display_name=display_name or email.split("@")[0],
        password_hash=hash_password(password),
        is_site_admin=project is None and role == Role.ADMIN,
        language=language,
    )
    session.add(user)
    session.flush()
    if project is not None and role is not None:
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


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise errors.bad_request(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")


def list_users(session: Session) -> list[User]:
    """Every user who has not been deleted, by e-mail."""
    return list(session.scalars(select(User).where(User.deleted_at.is_(None)).order_by(User.email)))


def find_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise errors.not_found(f"There is no user {user_id}.")
    return user


def reset_password(session: Session, user: User, password: str, actor: User | None = None) -> None:
    """A new password; every session of the user ends (a stolen cookie or token stops working)."""
    _check_password(password)
    user.password_hash = hash_password(password)
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    audit.record(
        session, "user.update", actor=actor, target_type="user", target_id=user.id, changed=["password"]
    )


def revoke_role(session: Session, user: User, project: Project, actor: User | None = None) -> None:
    """Take the user's role in the project away (Central's ``user.assignment.delete``)."""
    existing = session.get(ProjectRole, (user.id, project.id))
    if existing is None:
        return
    before = existing.role
    session.delete(existing)
    audit.record(
        session,
        "user.assignment.delete",
        actor=actor,
        project_id=project.id,
        target_type="user",
        target_id=user.id,
        role=before,
    )


def grant_role(session: Session, user: User, project: Project, role: str, actor: User | None = None) -> None:
    if role not in set(Role):
        raise errors.bad_request(f"Unknown role {role!r}: use admin, coordinator or analyst.")
    existing = session.get(ProjectRole, (user.id, project.id))
    before = existing.role if existing else None
    if before == role:
        return
    if existing is None:
        session.add(ProjectRole(user_id=user.id, project_id=project.id, role=role))
    else:
        existing.role = role
    audit.record(
        session,
        "user.assignment.create",
        actor=actor,
        project_id=project.id,
        target_type="user",
        target_id=user.id,
        role=role,
        before=before,
    )
