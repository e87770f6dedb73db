"""Sign-in, sign-out, the language switch and the home page (the user's projects)."""

from __future__ import annotations

import math

from flask import Response, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import func, select

from server import auth, db, errors
from server.console import console
from server.console import session as console_session
from server.console.i18n import LANG_COOKIE, LANGUAGES
from server.console.pages import role_in, safe_next
from server.models import Form
from server.projects import visible_projects

LANG_COOKIE_SECONDS = 365 * 24 * 3600


@console.get("/sign-in")
def sign_in() -> ResponseReturnValue:
    if console_session.signed_in_user() is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_template(
        "sign_in.html", next=request.args.get("next", ""), email="", failed=False, locked_minutes=None
    )


@console.post("/sign-in")
@db.write_request
def sign_in_post() -> ResponseReturnValue:
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    target = safe_next(request.form.get("next"))
    # auth.login is the API's own sign-in, with its sign-in limits (server/signin_limits.py): a locked
    # account or address gets a page saying how long to wait, with the same Retry-After as the API.
    try:
        web_session, token = auth.login(db.session(), email, password)
    except errors.Problem as problem:
        if problem.status not in (401, 429):
            raise
        wait = problem.details.get("retryAfter") if problem.status == 429 else None
        minutes = max(1, math.ceil(int(wait) / 60)) if wait else None
        html = render_template("sign_in.html", next=target, email=email, failed=True, locked_minutes=minutes)
        return Response(html, status=problem.status, mimetype="text/html", headers=problem.headers)
    response = redirect(target)
    console_session.start(response, token, web_session.expires_at)  # type: ignore[arg-type]
    return response


@console.post("/sign-out")
@db.write_request
def sign_out() -> ResponseReturnValue:
    response = redirect(url_for("console.sign_in"))
    console_session.end(response)  # type: ignore[arg-type]
    return response


@console.post("/language")
@db.write_request
def choose_language() -> ResponseReturnValue:
    """Remember the language: on the user when signed in, in a cookie for the sign-in page."""
    lang = request.form.get("lang", "")
    if lang not in LANGUAGES:
        raise errors.bad_request(_("Unknown language."))
    console_session.forget_user()  # read the user again, in this write transaction
    user = console_session.signed_in_user()
    if user is not None:
        user.language = lang
    response = make_response(redirect(safe_next(request.form.get("next"))))
    response.set_cookie(
        LANG_COOKIE, lang, max_age=LANG_COOKIE_SECONDS, secure=request.is_secure, samesite="Lax", path="/"
    )
    return response


@console.get("/")
def home() -> ResponseReturnValue:
    user = console_session.require_signed_in()
    session = db.session()
    projects = visible_projects(session, user)
    counts = dict(
        session.execute(
            select(Form.project_id, func.count())
            .where(Form.deleted_at.is_(None), Form.project_id.in_([p.id for p in projects]))
            .group_by(Form.project_id)
        ).all()
    )
    rows = [(p, role_in(user, p.id), counts.get(p.id, 0)) for p in projects]
    return render_template("home.html", rows=rows)
