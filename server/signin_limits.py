"""Sign-in limits shared by every worker: after ``MAX_FAILURES`` failures within ``WINDOW``, answer 429
with ``Retry-After`` instead of trying the credential again.

Three counts, kept in the database (table ``signin_failure``) so that every gunicorn worker and every
host of one central sees the same numbers:

- ``account``: wrong passwords for one e-mail address (``POST /v1/sessions``, Basic on ``/v1``, the
  browser console's sign-in). A locked account is refused *before* its password is checked.
- ``address``: wrong passwords from one client address, whatever the account tried.
- ``device-address``: wrong device credentials from one address: unknown device keys in
  ``/v1/key/<token>/…``, wrong Digest or Basic passwords of app users, unknown hub tokens on the sync
  routes. A device *password* is refused before it is checked while its address is locked (passwords
  can be guessed). A device key or hub token that is right is still accepted from a locked address:
  keys are 64 random characters that nobody guesses, and many tablets may reach central through one
  carrier's address, where one revoked tablet retrying must not lock the others out. Wrong keys from
  there get 429 until the window has passed.

The count is a sliding window: a subject is locked while it has ``MAX_FAILURES`` failures in the last
``WINDOW``; ``Retry-After`` says when the oldest of them leaves it. Refused attempts are not counted. A
successful password sign-in clears its account's failures (not its address's). An administrator lifts a
lock at once with ``sarhad user unlock EMAIL`` or ``sarhad user unlock --address ADDRESS``.

Failures are written after the request's own transaction has ended (a refused sign-in rolls its
transaction back, which must not take the count with it), in a short transaction of their own, with
their audit events: ``user.session.failure`` for each wrong password (e-mail and address), and when a
failure locks an account or an address, ``user.session.lock`` (``field_key.session.lock`` for device
credentials). Lifting a lock is audited as ``user.session.unlock``.

**For a new sign-in form** (the browser console): call :func:`check_password_signin` before checking the
password; on a wrong password call :func:`password_failed` and answer 401; on success call
:func:`password_succeeded` in the request's transaction.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import math

from flask import Flask, Response, g, has_request_context, request
from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server import audit, db, errors
from server.models import SigninFailure, User, utcnow

log = logging.getLogger(__name__)
MAX_FAILURES = 10
WINDOW = dt.timedelta(minutes=5)


class Scope(enum.StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"
    DEVICE_ADDRESS = "device-address"


def client_address() -> str:
    """The address a request came from (the one ProxyFix trusts, behind ``SARHAD_TRUSTED_PROXIES``)."""
    return (request.remote_addr or "unknown")[:255]


def _account(email: str) -> str:
    return email.strip().lower()[:255]


def retry_after(session: Session, scope: Scope, subject: str) -> int | None:
    """Seconds until ``subject`` may try again, or None when it is not locked."""
    since = utcnow() - WINDOW
    recent = list(
        session.scalars(
            select(SigninFailure.failed_at)
            .where(
                SigninFailure.scope == scope,
                SigninFailure.subject == subject,
                SigninFailure.failed_at > since,
            )
            .order_by(SigninFailure.failed_at.desc())
            .limit(MAX_FAILURES)
        )
    )
    if len(recent) < MAX_FAILURES:
        return None
    unlocks_at = recent[-1] + WINDOW  # the oldest of the last MAX_FAILURES leaves the window
    return max(1, math.ceil((unlocks_at - utcnow()).total_seconds()))


def _refuse(seconds: int, what: str) -> errors.Problem:
    return errors.too_many_failures(
        f"Too many failed attempts {what}. Try again in {seconds} seconds, or ask an administrator to "
        "lift the lock (sarhad user unlock).",
        seconds,
    )


def check_password_signin(session: Session, email: str) -> None:
    """Raise 429 when the account or the request's address is locked. Call before checking a password."""
    for scope, subject, what in (
        (Scope.ACCOUNT, _account(email), "for this account"),
        (Scope.ADDRESS, client_address(), "from this address"),
    ):
        seconds = retry_after(session, scope, subject)
        if seconds is not None:
            raise _refuse(seconds, what)


def password_failed(email: str) -> None:
    """Count a wrong password against the account and the request's address."""
    _note(Scope.ACCOUNT, _account(email))
    _note(Scope.ADDRESS, client_address())


def password_succeeded(session: Session, email: str) -> None:
    """A right password clears the account's failures (in the caller's transaction)."""
    session.execute(
        delete(SigninFailure).where(
            SigninFailure.scope == Scope.ACCOUNT, SigninFailure.subject == _account(email)
        )
    )


def check_device_address(session: Session) -> None:
    """Raise 429 when the request's address is locked for device credentials."""
    seconds = retry_after(session, Scope.DEVICE_ADDRESS, client_address())
    if seconds is not None:
        raise _refuse(seconds, "with device credentials from this address")


def device_credential_failed(session: Session, problem: errors.Problem) -> errors.Problem:
    """Count a wrong device key, device password or hub token against the address; the Problem to raise:
    429 once the address is locked, else ``problem`` (the usual 401). Outside a request (a command
    importing a bundle) there is no address to count: ``problem`` as it is."""
    if not has_request_context():
        return problem
    seconds = retry_after(session, Scope.DEVICE_ADDRESS, client_address())
    if seconds is not None:
        return _refuse(seconds, "with device credentials from this address")
    _note(Scope.DEVICE_ADDRESS, client_address())
    return problem


def unlock(
    session: Session,
    *,
    email: str | None = None,
    address: str | None = None,
    actor: User | None = None,
    via: str = "cli",
) -> int:
    """Forget the failures of an account and/or an address (every scope); returns how many. Audited."""
    removed = 0
    if email:
        removed += _delete(session, [Scope.ACCOUNT], _account(email))
    if address:
        removed += _delete(session, [Scope.ADDRESS, Scope.DEVICE_ADDRESS], address.strip())
    audit.record(
        session,
        "user.session.unlock",
        actor=actor,
        target_type="account" if email else "address",
        target_id=_account(email) if email else (address or "").strip(),
        address=address.strip() if address and email else None,
        forgotten=removed,
        via=via,
    )
    return removed


def is_locked(session: Session, email: str) -> int | None:
    """Seconds until the account may sign in again, or None (for the console's list of users)."""
    return retry_after(session, Scope.ACCOUNT, _account(email))


def _delete(session: Session, scopes: list[Scope], subject: str) -> int:
    result = session.execute(
        delete(SigninFailure).where(SigninFailure.scope.in_(scopes), SigninFailure.subject == subject)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---- recording after the request's transaction --------------------------------------------------------


def _note(scope: Scope, subject: str) -> None:
    if has_request_context():
        g.setdefault("signin_failures", []).append((scope, subject, utcnow()))


def _record(response: Response) -> Response:
    """Write the failures this request noted, in a transaction of their own, and purge old rows."""
    noted = g.pop("signin_failures", None)
    if not noted:
        return response
    try:
        with db.database().write() as writer:
            writer.session.execute(delete(SigninFailure).where(SigninFailure.failed_at <= utcnow() - WINDOW))
            writer.session.add_all(
                SigninFailure(scope=str(scope), subject=subject, failed_at=at) for scope, subject, at in noted
            )
            writer.session.flush()
            _audit_failures(writer.session, noted)
    except SQLAlchemyError:  # the refusal stands; a count lost to a busy database is not worth a 500
        log.exception("could not record %d failed sign-in(s)", len(noted))
    return response


def _audit_failures(session: Session, noted: list[tuple[Scope, str, dt.datetime]]) -> None:
    address = client_address()
    for scope, subject, _at in noted:
        if scope == Scope.ACCOUNT:
            audit.record(
                session, "user.session.failure", target_type="account", target_id=subject, address=address
            )
        if _just_locked(session, scope, subject):
            action = "field_key.session.lock" if scope == Scope.DEVICE_ADDRESS else "user.session.lock"
            audit.record(
                session,
                action,
                target_type="address" if scope != Scope.ACCOUNT else "account",
                target_id=subject,
                scope=str(scope),
                failures=MAX_FAILURES,
                minutes=int(WINDOW.total_seconds() // 60),
            )


def _just_locked(session: Session, scope: Scope, subject: str) -> bool:
    """True when this failure is the one that reached the limit (refused attempts are not counted, so
    the count reaches exactly ``MAX_FAILURES`` once per lock)."""
    count = session.scalar(
        select(func.count())
        .select_from(SigninFailure)
        .where(
            SigninFailure.scope == scope,
            SigninFailure.subject == subject,
            SigninFailure.failed_at > utcnow() - WINDOW,
        )
    )
    return count == MAX_FAILURES


def init_app(app: Flask) -> None:
    app.after_request(_record)
