"""What every console page shares: CSRF checks, security headers, gzip, error pages, template helpers."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Response, redirect, render_template, request, url_for
from flask_babel import format_datetime, format_decimal, get_locale
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from server import auth, errors
from server.api.compression import gzip_if_accepted
from server.console import console
from server.console.i18n import LANGUAGES, TIMEZONE
from server.console.session import (
    CSRF_FIELD,
    SignInNeeded,
    check_csrf,
    csrf_token,
    forget_user,
    keep_anon_cookie,
    signed_in_user,
)
from server.errors import Problem, http_problem
from server.models import User

GZIP_TYPES = frozenset({"text/html", "text/css", "application/javascript", "image/svg+xml"})
# Everything comes from this server; images may also be inline (the QR codes are data: PNGs, so that
# the device token they carry never sits in a URL, a log or a cache).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@console.before_request
def _refuse_forged_posts() -> None:
    if request.method == "POST":
        check_csrf()


@console.after_request
def _headers(response: Response) -> Response:
    keep_anon_cookie(response)
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html":
        # Pages hold personal data: never kept by a shared computer's cache or a proxy.
        headers["Cache-Control"] = "no-store"
    return gzip_if_accepted(response, GZIP_TYPES)


# ---- errors as pages --------------------------------------------------------------------------------


def _error_page(problem: Problem) -> Response:
    forget_user()  # a failed write transaction was rolled back: read the user again for the page
    html = render_template("error.html", problem=problem)
    return Response(html, status=problem.status, mimetype="text/html")


@console.errorhandler(SignInNeeded)
def _to_sign_in(_exc: SignInNeeded) -> Response:
    target = request.full_path if request.method == "GET" else request.path
    return redirect(url_for("console.sign_in", next=target.rstrip("?")))  # type: ignore[return-value]


@console.errorhandler(Problem)
def _problem(exc: Problem) -> Response:
    if exc.status == 401:
        return _to_sign_in(SignInNeeded())
    return _error_page(exc)


@console.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    return _error_page(http_problem(exc))


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in (never another site)."""
    if not target:
        return url_for("console.home")
    parts = urlsplit(target)
    # Browsers read a backslash as a slash: "/\\evil.example" would leave the site.
    leaves = parts.scheme or parts.netloc or target.startswith("//") or "\\" in target
    if leaves or not target.startswith("/"):
        return url_for("console.home")
    return target


# ---- template helpers -------------------------------------------------------------------------------

REVIEW_STATES = ("received", "hasIssues", "edited", "approved", "rejected")
FORM_STATES = ("open", "closing", "closed")


def review_state_label(state: str | None) -> str:
    return {
        "received": _("Received"),
        "hasIssues": _("Has issues"),
        "edited": _("Edited"),
        "approved": _("Approved"),
        "rejected": _("Rejected"),
    }.get(state or "received", state or "")


def form_state_label(state: str) -> str:
    return {
        "open": _("Open"),
        "closing": _("Closing"),
        "closed": _("Closed"),
    }.get(state, state)


def role_label(role: str | None) -> str:
    return {
        "admin": _("Administrator"),
        "coordinator": _("Coordinator"),
        "analyst": _("Analyst"),
    }.get(role or "", role or "")


def when(value: dt.datetime | None) -> str:
    return format_datetime(value, "medium") if value else ""


def number(value: int | float | None) -> str:
    return format_decimal(value or 0)


def day_start(text: str | None, *, next_day: bool = False) -> dt.datetime | None:
    """A date typed in the filter (Tajikistan's calendar day) → its start as an aware datetime."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise errors.bad_request(_("%(value)s is not a date.", value=text)) from None
    if next_day:
        day += dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(TIMEZONE)).astimezone(dt.UTC)


def role_in(user: User, project_id: int) -> str | None:
    return auth.project_role(user, project_id)


@console.app_context_processor
def _template_helpers() -> dict[str, Any]:
    if request.blueprint != "console":
        return {}
    return {
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token,
        "languages": LANGUAGES,
        "current_language": str(get_locale() or "en"),
        "user": signed_in_user(),
        "when": when,
        "number": number,
        "review_state_label": review_state_label,
        "form_state_label": form_state_label,
        "role_label": role_label,
    }
