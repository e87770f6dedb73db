"""Console sign-in: a cookie that names a server-side session, and CSRF tokens for every form.

- The cookie ``sarhad_session`` holds a random token; the database keeps only its sha256, in the same
  ``web_session`` table as the API's bearer tokens, so signing out (or an administrator deleting the
  row) ends it at once. HttpOnly, SameSite=Lax, Secure when the request came over HTTPS, and it expires
  with the session (``SARHAD_SESSION_TTL_HOURS``).
- Every POST of the console carries a CSRF token: an HMAC, under the server's secret key, of the
  session token (signed in) or of a random ``sarhad_csrf`` cookie (the sign-in and language forms before
  signing in). A page from another site can neither read the cookie nor compute the token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from flask import current_app, g, request
from flask.wrappers import Response
from flask_babel import gettext as _
from sqlalchemy import delete

from server import auth, db, errors
from server.models import User, WebSession, utcnow

SESSION_COOKIE = "sarhad_session"
ANON_COOKIE = "sarhad_csrf"
CSRF_FIELD = "csrf_token"


class SignInNeeded(Exception):
    """The page needs a signed-in user; the console answers with a redirect to the sign-in page."""


def _session_token() -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def signed_in_user() -> User | None:
    """The user of the session cookie (read in this request's session, so inside a write request it is
    read in the write transaction), or None. Also becomes ``auth.current_user()`` for this request, so
    that every role check of the API applies unchanged."""
    if "console_user" in g:
        return g.console_user  # type: ignore[no-any-return]
    user = None
    token = _session_token()
    if token:
        found = db.session().get(WebSession, auth.token_sha256(token))
        if found is not None and found.expires_at > utcnow() and found.user.deleted_at is None:
            user = found.user
    g.console_user = user
    g.current_user = user  # what server.auth's role checks read
    return user


def require_signed_in() -> User:
    user = signed_in_user()
    if user is None:
        raise SignInNeeded()
    return user


def forget_user() -> None:
    """Drop what this request read about the user (before a write transaction reads it again)."""
    g.pop("console_user", None)
    g.pop("current_user", None)


def start(response: Response, token: str, expires_at: dt.datetime) -> None:
    """Hand the browser the cookie of a session that ``auth.login`` created."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        expires=expires_at,
        httponly=True,
        secure=request.is_secure,
        samesite="Lax",
        path="/",
    )


def end(response: Response) -> None:
    """Delete this browser's session row (so the token is dead everywhere) and its cookie."""
    token = _session_token()
    if token:
        db.session().execute(delete(WebSession).where(WebSession.token_sha256 == auth.token_sha256(token)))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=request.is_secure, samesite="Lax")


# ---- CSRF -------------------------------------------------------------------------------------------


def _anon_value() -> str:
    """The random value of the pre-sign-in CSRF cookie, made once per browser."""
    if "console_anon" not in g:
        g.console_anon = request.cookies.get(ANON_COOKIE) or secrets.token_urlsafe(24)
    return g.console_anon  # type: ignore[no-any-return]


def _mac(value: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    return hmac.new(key, b"console-csrf:" + value.encode("utf-8"), hashlib.sha256).hexdigest()


def csrf_token() -> str:
    """The token a form of this page must send back."""
    token = _session_token() if signed_in_user() is not None else None
    return _mac(token) if token else _mac(_anon_value())


def check_csrf() -> None:
    """Refuse a POST whose token is not this browser's (a forged cross-site request)."""
    sent = request.form.get(CSRF_FIELD, "")
    candidates = [v for v in (_session_token(), request.cookies.get(ANON_COOKIE)) if v]
    if not sent or not any(hmac.compare_digest(sent, _mac(v)) for v in candidates):
        raise errors.form_expired(
            _("This form has expired or did not come from this console. Reload the page and try again.")
        )


def keep_anon_cookie(response: Response) -> None:
    """Set the pre-sign-in CSRF cookie when this request made one."""
    if "console_anon" in g and request.cookies.get(ANON_COOKIE) != g.console_anon:
        response.set_cookie(
            ANON_COOKIE, g.console_anon, httponly=True, secure=request.is_secure, samesite="Lax", path="/"
        )
