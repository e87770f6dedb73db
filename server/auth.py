"""Web users: password hashing, bearer sessions, and the role checks of the /v1 API.

Devices (app users) authenticate elsewhere (server/devices.py): by a token in the URL or by Digest.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, config, db, errors, signin_limits
from server.models import ProjectRole, Role, User, WebSession, utcnow

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps an unknown e-mail as slow as a wrong password (no user enumeration);
    made on first use, not at import, so that every `sarhad` command starts quickly."""
    return _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def login(session: Session, email: str, password: str) -> tuple[WebSession, str]:
    """Check e-mail and password; return a new session and its plain token (shown once). Refused with
    429 while the account or the address is locked (server.signin_limits)."""
    user = password_user(session, email, password)
    if user is None:
        raise errors.unauthenticated("The e-mail address or password is wrong.")
    token = secrets.token_urlsafe(48)
    ttl = dt.timedelta(hours=config.settings().session_ttl_hours)
    web_session = WebSession(token_sha256=token_sha256(token), user_id=user.id, expires_at=utcnow() + ttl)
    session.add(web_session)
    audit.record(
        session,
        "user.session.create",
        actor=user,
        target_type="user",
        target_id=user.id,
        address=signin_limits.client_address(),
    )
    return web_session, token


def password_user(session: Session, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or None; every failure counts towards the sign-in
    limits, and a locked account or address is refused (429) before the password is checked."""
    signin_limits.check_password_signin(session, email)
    user = find_active_user(session, email)
    if user is None or not verify_password(user.password_hash, password):
        if user is None:
            verify_password(None, password)
        signin_limits.password_failed(email)
        return None
    signin_limits.password_succeeded(session, email)
    return user


def find_active_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower(), User.deleted_at.is_(None)))


def _user_from_bearer(token: str) -> User | None:
    found = db.session().get(WebSession, token_sha256(token))
    if found is None or found.expires_at <= utcnow() or found.user.deleted_at is not None:
        return None
    return found.user


def _user_from_basic(encoded: str) -> User | None:
    # Basic sends the password itself: accepted only over HTTPS.
    if not request.is_secure:
        raise errors.unauthenticated("Basic authentication is accepted only over HTTPS.")
    try:
        email, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password_user(db.session(), email, password)


def current_user() -> User | None:
    """The web user this request authenticates as, or None when it carries no credentials."""
    if "current_user" in g:
        return g.current_user  # type: ignore[no-any-return]
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    user: User | None = None
    if scheme.lower() == "bearer" and value:
        user = _user_from_bearer(value.strip())
        if user is None:
            raise errors.unauthenticated("The session token is unknown or has expired; sign in again.")
    elif scheme.lower() == "basic" and value:
        user = _user_from_basic(value.strip())
        if user is None:
            raise errors.unauthenticated()
    g.current_user = user
    return user


def require_user() -> User:
    user = current_user()
    if user is None:
        raise errors.unauthenticated("This needs a signed-in user: POST /v1/sessions first.")
    return user


def project_role(user: User, project_id: int) -> str | None:
    if user.is_site_admin:
        return Role.ADMIN
    row = db.session().get(ProjectRole, (user.id, project_id))
    return row.role if row else None


def require_project_role(project_id: int, *roles: str) -> User:
    """The signed-in user if it holds one of ``roles`` in the project (any role when none given)."""
    user = require_user()
    role = project_role(user, project_id)
    if role is None or (roles and role not in roles):
        raise errors.forbidden("Your role in this project does not allow this.")
    return user


def require_site_admin() -> User:
    user = require_user()
    if not user.is_site_admin:
        raise errors.forbidden("Only an administrator may do this.")
    return user
