"""Users and roles, for site administrators: list and create web users, set their role in each project,
reset a password, lift a sign-in lock. The same code as the CLI (``server.users``,
``server.signin_limits.unlock``), so every change is audited the same way, marked ``via: console``
where the action has a ``via``.
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from server import auth, db, errors, signin_limits, users
from server.console import console
from server.console.session import require_signed_in
from server.models import Project, ProjectRole, Role, User

# What the role select offers for a project: no role, or one of the API's project roles.
NO_ROLE = ""
PROJECT_ROLES = (Role.ADMIN, Role.COORDINATOR, Role.ANALYST)


def _admin() -> User:
    require_signed_in()
    return auth.require_site_admin()


def _projects() -> list[Project]:
    return list(db.session().scalars(select(Project).order_by(Project.name)))


@console.get("/users")
def users_page() -> ResponseReturnValue:
    _admin()
    return _users_list()


def _users_list(
    error: str | None = None, status: int = 200, typed: dict[str, str] | None = None
) -> ResponseReturnValue:
    """The list and the new-user form; after a refused form, its message and what was typed (not the
    password)."""
    session = db.session()
    listed = users.list_users(session)
    roles: dict[int, list[tuple[str, str]]] = {}
    for row, name in session.execute(
        select(ProjectRole, Project.name)
        .join(Project, Project.id == ProjectRole.project_id)
        .order_by(Project.name)
    ).all():
        roles.setdefault(row.user_id, []).append((name, row.role))
    locked = {u.id: signin_limits.is_locked(session, u.email) for u in listed}
    return render_template(
        "users.html",
        users=listed,
        roles=roles,
        locked=locked,
        projects=_projects(),
        project_roles=PROJECT_ROLES,
        message=_message(),
        error=error,
        typed=typed or {},
        min_password=users.MIN_PASSWORD_LENGTH,
    ), status


def _message() -> str | None:
    return {
        "created": _("The user was created."),
        "roles": _("The roles were saved."),
        "password": _("The password was changed. The user's sessions have ended."),
        "unlocked": _("The sign-in lock was lifted."),
    }.get(request.args.get("done", ""))


@console.post("/users")
@db.write_request
def create_user() -> ResponseReturnValue:
    actor = _admin()
    form = request.form
    language = form.get("language") or None
    project_id = form.get("project", type=int)
    role = form.get("role") or None
    if form.get("site_admin"):
        role, project = Role.ADMIN, None
    elif project_id is not None and role is not None:
        project = db.session().get(Project, project_id)
        if project is None:
            raise errors.not_found(_("There is no such project."))
    else:
        role, project = None, None
    try:
        made = users.create_user(
            db.session(),
            form.get("email", ""),
            form.get("password", ""),
            role,
            project,
            display_name=form.get("name", "").strip() or None,
            actor=actor,
            language=language,
        )
    except errors.Problem as problem:
        if problem.status not in (400, 409):
            raise
        # Nothing was written: checks come before the user is added. The form comes back filled in.
        typed = {k: form.get(k, "") for k in ("email", "name", "language", "project", "role", "site_admin")}
        return _users_list(problem.message, problem.status, typed)
    return redirect(url_for("console.user_page", user_id=made.id, done="created"))


@console.get("/users/<int:user_id>")
def user_page(user_id: int) -> ResponseReturnValue:
    _admin()
    session = db.session()
    shown = users.find_user(session, user_id)
    held = {r.project_id: r.role for r in shown.roles}
    return render_template(
        "user.html",
        shown=shown,
        rows=[(p, held.get(p.id, NO_ROLE)) for p in _projects()],
        project_roles=PROJECT_ROLES,
        locked=signin_limits.is_locked(session, shown.email),
        message=_message(),
        min_password=users.MIN_PASSWORD_LENGTH,
    )


@console.post("/users/<int:user_id>/roles")
@db.write_request
def set_roles(user_id: int) -> ResponseReturnValue:
    """Every project's select at once: a changed role is granted, an emptied one taken away."""
    actor = _admin()
    session = db.session()
    shown = users.find_user(session, user_id)
    for project in _projects():
        field = f"role-{project.id}"
        if field not in request.form:
            continue
        role = request.form[field]
        if role == NO_ROLE:
            users.revoke_role(session, shown, project, actor=actor)
        elif role in PROJECT_ROLES:
            users.grant_role(session, shown, project, role, actor=actor)
        else:
            raise errors.bad_request(_("Unknown role."))
    return redirect(url_for("console.user_page", user_id=user_id, done="roles"))


@console.post("/users/<int:user_id>/password")
@db.write_request
def reset_password(user_id: int) -> ResponseReturnValue:
    actor = _admin()
    session = db.session()
    shown = users.find_user(session, user_id)
    users.reset_password(session, shown, request.form.get("password", ""), actor=actor)
    if shown.id == actor.id:  # one's own sessions ended too: sign in again with the new password
        return redirect(url_for("console.sign_in"))
    return redirect(url_for("console.user_page", user_id=user_id, done="password"))


@console.post("/users/<int:user_id>/unlock")
@db.write_request
def unlock_user(user_id: int) -> ResponseReturnValue:
    actor = _admin()
    session = db.session()
    shown = users.find_user(session, user_id)
    signin_limits.unlock(session, email=shown.email, actor=actor, via="console")
    return redirect(url_for("console.user_page", user_id=user_id, done="unlocked"))


@console.post("/users/unlock-address")
@db.write_request
def unlock_address() -> ResponseReturnValue:
    """Lift the lock of a client address (as ``sarhad user unlock --address``): one site's tablets and
    laptops often share one address, and a few wrong passwords there lock everyone out for a while."""
    actor = _admin()
    address = request.form.get("address", "").strip()
    if not address or len(address) > 255:
        raise errors.bad_request(_("Type the address to unlock."))
    signin_limits.unlock(db.session(), address=address, actor=actor, via="console")
    return redirect(url_for("console.users_page", done="unlocked"))
