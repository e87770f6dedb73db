"""App users (devices and facilitators): tokens, Digest passwords, form assignments, authentication.

A device signs in one of two ways:

- by a long random token in the URL (``/v1/key/<token>/projects/<p>/...``): what the QR code carries;
  only its sha256 is stored, so a lookup is one indexed query and a stolen database holds no tokens;
- on a hub's local network over plain HTTP, by HTTP **Digest** with a username (the app user's name) and
  a password, of which only HA1 = MD5(username:realm:password) is stored.

Digest is written here rather than with flask-httpauth because Collect needs what that library cannot
say: nonces that live on no server (Collect keeps no cookies, and any gunicorn worker or host must accept
them), ``stale=true`` when a nonce has expired (Collect then retries without asking the facilitator), and
``charset=UTF-8`` in the challenge (without it Collect hashes a Cyrillic password as US-ASCII). The
header itself is parsed by werkzeug. Nonces are ``<time>.<random>.<HMAC>`` signed with the secret key;
Collect reuses a nonce pre-emptively with nc+1, which is accepted while the nonce is fresh, once per
count: the pairs used are recorded in the database (``DigestNonceUse``), so an overheard header cannot be
replayed on any worker or host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from urllib.parse import unquote, urlsplit

from flask import request
from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.orm import Session

from server import audit, config, db, errors, signin_limits
from server.auth import token_sha256
from server.ingest.reconcile import FormTarget
from server.models import AppUser, DigestNonceUse, Form, FormAssignment, FormState, Project, User, utcnow
from server.roles import APP_USER
from server.url_ids import decoded_path

NONCE_LIFETIME_SECONDS = 300
REVOKED_MESSAGE = "This device's access was revoked: ask the coordinator for a new QR code."


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_ha1(username: str, realm: str, password: str) -> str:
    return _md5(f"{username}:{realm}:{password}")


def _sendable_username(name: str) -> bool:
    return all(" " <= c <= "~" and c not in '"\\' for c in name)


# ---- app users --------------------------------------------------------------------------------------


def create_app_user(
    session: Session,
    project: Project,
    display_name: str,
    *,
    password: str | None = None,
    realm: str,
    actor: User | None = None,
) -> tuple[AppUser, str]:
    """A new app user; returns it with its plain token, which is shown once and never stored."""
    display_name = display_name.strip()
    if not display_name or ":" in display_name or len(display_name) > 200:
        raise errors.bad_request("An app user needs a name of 1 to 200 characters without ':'.")
    taken = session.scalar(
        select(AppUser).where(AppUser.project_id == project.id, AppUser.display_name == display_name)
    )
    if taken is not None:
        raise errors.conflict(f"An app user named {display_name!r} already exists in this project.")
    if password is not None:
        if len(password) < 8:
            raise errors.bad_request("A device password needs at least 8 characters.")
        if not _sendable_username(display_name):
            # OkHttp refuses non-ASCII header values, so Collect could never send such a username.
            raise errors.bad_request(
                "A device that signs in with a password needs a name in Latin letters, digits, spaces and "
                f"punctuation other than quotes and backslashes (Collect cannot send {display_name!r})."
            )
    token = secrets.token_urlsafe(48)
    app_user = AppUser(
        project_id=project.id,
        display_name=display_name,
        token_sha256=token_sha256(token),
        digest_ha1=digest_ha1(display_name, realm, password) if password is not None else None,
        created_by_id=actor.id if actor else None,
    )
    session.add(app_user)
    session.flush()
    audit.record(
        session,
        "field_key.create",
        actor=actor,
        project_id=project.id,
        target_type="app_user",
        target_id=app_user.id,
        with_password=password is not None,
    )
    return app_user, token


def rotate_token(session: Session, app_user: AppUser, actor: User | None = None) -> str:
    """A new token for the app user; the old one stops working with this commit."""
    if app_user.revoked_at is not None:
        raise errors.conflict("This app user is revoked; create a new one.")
    token = secrets.token_urlsafe(48)
    app_user.token_sha256 = token_sha256(token)
    _head_trusted.clear()  # this process stops trusting the old token at once; others within seconds
    audit.record(
        session,
        "field_key.session.rotate",
        actor=actor,
        project_id=app_user.project_id,
        target_type="app_user",
        target_id=app_user.id,
    )
    return token


def revoke_app_user(session: Session, app_user: AppUser, actor: User | None = None) -> None:
    if app_user.revoked_at is None:
        app_user.revoked_at = utcnow()
        _head_trusted.clear()
        audit.record(
            session,
            "field_key.session.end",
            actor=actor,
            project_id=app_user.project_id,
            target_type="app_user",
            target_id=app_user.id,
        )


def find_app_user(session: Session, project: Project, ref: str | int) -> AppUser:
    """An app user of the project by id or by name."""
    found = None
    if isinstance(ref, int) or str(ref).isdigit():
        found = session.get(AppUser, int(ref))
        if found is not None and found.project_id != project.id:
            found = None
    if found is None:
        found = session.scalar(
            select(AppUser).where(AppUser.project_id == project.id, AppUser.display_name == str(ref))
        )
    if found is None:
        raise errors.not_found(f"There is no app user {ref!r} in project {project.name!r}.")
    return found


# Run on every submission and form list: prebuilt Core statements, no ORM objects.
_ASSIGNED = select(FormAssignment.form_id).where(FormAssignment.app_user_id == bindparam("app_user_id"))
_BY_TOKEN = select(*AppUser.__table__.columns).where(AppUser.token_sha256 == bindparam("sha256"))


def _assigned(session: Session, app_user: AppUser) -> set[int] | None:
    """The form ids assigned to the app user, or None when it has no assignment (it sees every form)."""
    ids = set(session.connection().scalars(_ASSIGNED, {"app_user_id": app_user.id}))
    return ids or None


def visible_forms(session: Session, app_user: AppUser) -> list[Form]:
    """Open, published forms of the app user's project, narrowed to its assignments when it has any."""
    forms = session.scalars(
        select(Form)
        .where(
            Form.project_id == app_user.project_id,
            Form.state == FormState.OPEN,
            Form.deleted_at.is_(None),
            Form.current_version_id.is_not(None),
        )
        .order_by(Form.xml_form_id)
    ).all()
    assigned = _assigned(session, app_user)
    return [f for f in forms if assigned is None or f.id in assigned]


def may_submit(session: Session, app_user: AppUser, target: FormTarget, project_id: int) -> bool:
    """Same project, not revoked, assigned (or no assignments) and the form not closed. ``target`` is what
    ``find_target`` found in ``project_id`` (a form that is not deleted)."""
    if app_user.revoked_at is not None or project_id != app_user.project_id:
        return False
    if target.state == FormState.CLOSED:
        return False
    assigned = _assigned(session, app_user)
    return assigned is None or target.form_id in assigned


def assigned_form_ids(session: Session, app_user: AppUser) -> set[int]:
    """The ids of the forms assigned to the app user (empty: it sees every open form)."""
    return _assigned(session, app_user) or set()


def assign_form(session: Session, app_user: AppUser, form: Form, actor: User | None) -> None:
    """Let the app user see ``form`` (and, once it has any assignment, only its assigned forms)."""
    if session.get(FormAssignment, (app_user.id, form.id)) is not None:
        raise errors.conflict(
            f"The app user {app_user.display_name!r} is already assigned to {form.xml_form_id!r}.",
            actorId=app_user.id,
            roleId=APP_USER.id,
        )
    session.add(FormAssignment(app_user_id=app_user.id, form_id=form.id))
    _record_assignment(session, "field_key.assignment.create", app_user, form, actor)


def unassign_form(session: Session, app_user: AppUser, form: Form, actor: User | None) -> None:
    row = session.get(FormAssignment, (app_user.id, form.id))
    if row is None:
        raise errors.not_found("This app user is not assigned to this form.")
    session.delete(row)
    _record_assignment(session, "field_key.assignment.delete", app_user, form, actor)


def _record_assignment(
    session: Session, action: str, app_user: AppUser, form: Form, actor: User | None
) -> None:
    audit.record(
        session,
        action,
        actor=actor,
        project_id=form.project_id,
        target_type="form",
        target_id=form.xml_form_id,
        app_user_id=app_user.id,
    )


def has_assignments(session: Session, form: Form) -> bool:
    return bool(session.scalar(select(exists().where(FormAssignment.form_id == form.id))))


# ---- authentication -------------------------------------------------------------------------------


def authenticate_device(project_id: int, token: str | None) -> AppUser:
    """The app user of this request, by the token in its URL or, without one, by Digest.

    Raises 401 (with a Digest challenge when no token was given) or 403 as a Problem.
    """
    if token is not None:
        return _by_token(project_id, token)
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return _by_basic(project_id, auth.username or "", auth.password or "")
    return _by_digest(project_id)


# HEAD /submission only asks "may I send?" before every POST, and the POST checks the token again in the
# database. So a HEAD may trust a token the database accepted for this project in the last few seconds:
# a device revoked meanwhile gets a 204 to its HEAD and its POST is refused, as it must be.
HEAD_TRUST_SECONDS = 10.0
_HEAD_TRUST_MAX = 10_000
_head_trusted: dict[tuple[str, int], float] = {}


def check_device_for_head(project_id: int, token: str | None) -> None:
    """Authenticate a HEAD /submission: as :func:`authenticate_device`, but a token accepted moments ago
    for this project is trusted without asking the database again."""
    if token is None:
        authenticate_device(project_id, token)
        return
    key = (token_sha256(token), project_id)
    now = time.monotonic()
    if _head_trusted.get(key, 0.0) > now:
        return
    _by_token(project_id, token)
    if len(_head_trusted) >= _HEAD_TRUST_MAX:
        _head_trusted.clear()
    _head_trusted[key] = now + HEAD_TRUST_SECONDS


def _by_token(project_id: int, token: str) -> AppUser:
    row = db.session().connection().execute(_BY_TOKEN, {"sha256": token_sha256(token)}).first()
    if row is None:
        raise signin_limits.device_credential_failed(
            db.session(),
            errors.unauthenticated(
                "This server does not know this device's key: scan the project's QR code again."
            ),
        )
    # A detached copy of the row, read and never added to a session (no relationship points at AppUser):
    # loading it as an ORM object cost more than the rest of a HEAD request.
    app_user = AppUser(**row._mapping)
    if app_user.revoked_at is not None:
        raise errors.forbidden(REVOKED_MESSAGE)
    if app_user.project_id != project_id:
        raise errors.forbidden("This device's key is for another project.")
    return app_user


def _secret() -> bytes:
    return str(config.settings().secret_key).encode()


def _realm() -> str:
    return str(config.settings().digest_realm)


def _sign(value: str) -> str:
    return hmac.new(_secret(), value.encode(), hashlib.sha256).hexdigest()[:32]


def new_nonce(now: float | None = None) -> str:
    value = f"{int(now if now is not None else time.time())}.{secrets.token_hex(8)}"
    return f"{value}.{_sign(value)}"


def _nonce_state(nonce: str) -> str:
    """'fresh', 'stale' (authentic but expired) or 'bad'."""
    value, _, signature = nonce.rpartition(".")
    if not value or not hmac.compare_digest(signature, _sign(value)):
        return "bad"
    try:
        issued = int(value.split(".", 1)[0])
    except ValueError:
        return "bad"
    age = time.time() - issued
    if age < -60:
        return "bad"
    return "fresh" if age <= NONCE_LIFETIME_SECONDS else "stale"


def challenge(stale: bool = False) -> str:
    parts = [
        f'Digest realm="{_realm()}"',
        'qop="auth"',
        "algorithm=MD5",
        f'nonce="{new_nonce()}"',
        "charset=UTF-8",
    ]
    if stale:
        parts.append("stale=true")
    return ", ".join(parts)


def _refuse(message: str, stale: bool = False) -> errors.Problem:
    problem = errors.unauthenticated(message)
    problem.headers["WWW-Authenticate"] = challenge(stale)
    return problem


def _password_user(project_id: int, username: str) -> AppUser | None:
    return db.session().scalar(
        select(AppUser).where(
            AppUser.project_id == project_id,
            AppUser.display_name == username,
            AppUser.digest_ha1.is_not(None),
        )
    )


def _by_basic(project_id: int, username: str, password: str) -> AppUser:
    # Basic carries the password itself: only over HTTPS, as Collect itself insists.
    if not request.is_secure:
        raise _refuse("Basic authentication is accepted only over HTTPS; use Digest.")
    signin_limits.check_device_address(db.session())  # a password can be guessed: locked means no try
    app_user = _password_user(project_id, username)
    given = digest_ha1(username, _realm(), password)
    if app_user is None or not hmac.compare_digest(given, app_user.digest_ha1 or ""):
        raise signin_limits.device_credential_failed(
            db.session(), _refuse("The username or password is wrong.")
        )
    if app_user.revoked_at is not None:
        raise errors.forbidden(REVOKED_MESSAGE)
    return app_user


def _names_this_request(uri: str) -> bool:
    """The Digest ``uri`` (Collect sends the encoded path and query) names the resource requested. A
    proxy may have stripped a path prefix, so the path only has to end with the one Flask saw."""
    path = unquote(urlsplit(uri).path)
    seen = decoded_path()  # a form id's %2F is kept encoded through routing; compare decoded paths
    return path == request.script_root + seen or path.endswith(seen)


def _by_digest(project_id: int) -> AppUser:
    auth = request.authorization
    if auth is None or auth.type != "digest":
        raise _refuse("This device must sign in: enter its username and password in Collect's settings.")
    fields = {
        k: auth.parameters.get(k)
        for k in ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
    }
    if not all(fields[k] for k in ("username", "realm", "nonce", "uri", "response")):
        raise _refuse("The Digest credentials are incomplete.")
    if fields["realm"] != _realm() or not _names_this_request(fields["uri"] or ""):
        raise _refuse("The Digest credentials are not for this address.")
    state = _nonce_state(fields["nonce"])  # type: ignore[arg-type]
    if state == "bad":
        raise _refuse("The Digest nonce was not issued by this server.")

    signin_limits.check_device_address(db.session())  # a password can be guessed: locked means no try
    app_user = _password_user(project_id, fields["username"] or "")
    ha1 = app_user.digest_ha1 if app_user is not None else _md5(secrets.token_hex(8))
    ha2 = _md5(f"{request.method}:{fields['uri']}")
    if fields["qop"] == "auth":
        if not fields["nc"] or not fields["cnonce"]:
            raise _refuse("The Digest credentials are incomplete.")
        expected = _md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
    elif fields["qop"] is None:
        expected = _md5(f"{ha1}:{fields['nonce']}:{ha2}")
    else:
        raise _refuse("Only qop=auth is supported.")
    if app_user is None or not hmac.compare_digest(expected, fields["response"] or ""):
        raise signin_limits.device_credential_failed(
            db.session(), _refuse("The username or password is wrong.")
        )
    if state == "stale":
        # Right password, old nonce: Collect retries with the new nonce without asking the user.
        raise _refuse("The Digest nonce has expired.", stale=True)
    if app_user.revoked_at is not None:
        raise errors.forbidden(REVOKED_MESSAGE)
    if not _first_use(fields["nonce"], fields["nc"]):  # type: ignore[arg-type]
        # A replayed header (or a client's own retry of a header it already sent): with stale=true
        # Collect signs the request again with a new nonce, which only the password holder can.
        raise _refuse("This Digest signature was already used.", stale=True)
    return app_user


NONCE_USES_KEPT = dt.timedelta(seconds=2 * NONCE_LIFETIME_SECONDS)  # a nonce is refused long before
_PURGE_EVERY_SECONDS = 60.0
_NONCE_COUNT = re.compile(r"[0-9a-fA-F]{8}")
_last_purge = 0.0


def _first_use(nonce: str, nc: str | None) -> bool:
    """Record that ``nonce`` signed a request with count ``nc``; False if that pair was used before, by
    any worker or host of this database. Without ``qop`` there is no count: such a nonce signs once."""
    global _last_purge
    if nc is not None and not _NONCE_COUNT.fullmatch(nc):
        raise _refuse("The Digest nonce count must be 8 hexadecimal digits.")
    count = int(nc, 16) if nc else 0
    now = time.monotonic()
    with db.database().write() as writer:
        if now - _last_purge > _PURGE_EVERY_SECONDS:
            _last_purge = now
            writer.session.execute(
                delete(DigestNonceUse).where(DigestNonceUse.used_at < utcnow() - NONCE_USES_KEPT)
            )
        return db.insert_if_new(writer.session, DigestNonceUse, ["nonce", "nc"], nonce=nonce, nc=count)
