"""``/v1/roles`` and the assignments of roles to actors, in ODK Central's shape (see ``server/roles.py``).

- ``/v1/projects/{p}/forms/{f}/assignments[/{role}[/{actorId}]]``: app users (role 2, ``app-user``)
  assigned to a form. An app user with no assignment sees every open form of its project; with
  assignments, only those. pyodk's ``projects.create_app_users(names, forms)`` assigns this way.
- ``/v1/projects/{p}/assignments[/{role}[/{actorId}]]``: web users' roles in the project (``manager``,
  ``viewer``, ``coordinator``). Sarhad gives a user one role per project: assigning a second is refused
  until the first is revoked.
- ``/v1/projects/{p}/assignments/forms[/{role}]``: every form assignment of the project at once.

A role is named by number or system name. Assigning what is already assigned is 409.3, as in Central.
Lists answer ``[{actorId, roleId}]``, or ``[{actor, roleId}]`` with ``X-Extended-Metadata: true``.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from server import audit, auth, db, devices, errors
from server.api import api
from server.api.app_users import app_user_json
from server.api.schemas import iso
from server.forms.publish import find_form
from server.models import AppUser, Form, FormAssignment, ProjectRole, Role, User
from server.projects import find_project
from server.roles import APP_USER, ROLES, CentralRole, find_role, role_for_project_role

FORM_ASSIGNERS = ("admin", "coordinator")
# Only a project's admins (and site administrators) hand out roles in it: a coordinator may not make
# someone a manager.
PROJECT_ASSIGNERS = (Role.ADMIN,)
FORM = "/projects/<int:project_id>/forms/<xml_form_id>/assignments"
PROJECT = "/projects/<int:project_id>/assignments"


def user_actor_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "type": "user",
        "displayName": user.display_name,
        "createdAt": iso(user.created_at),
        "updatedAt": None,
        "deletedAt": iso(user.deleted_at),
    }


def _extended() -> bool:
    return request.headers.get("X-Extended-Metadata", "").strip().lower() == "true"


def _pairs(rows: list[tuple[dict[str, Any], int]], **extra: Any) -> list[dict[str, Any]]:
    """``(actor json, roleId)`` as Central lists assignments: ids, or whole actors when asked."""
    if _extended():
        return [{"actor": actor, **extra, "roleId": role_id} for actor, role_id in rows]
    return [{"actorId": actor["id"], **extra, "roleId": role_id} for actor, role_id in rows]


# ---- roles -----------------------------------------------------------------------------------------------


@api.get("/roles")
def list_roles() -> ResponseReturnValue:
    return jsonify([r.as_json() for r in ROLES])  # open to anyone, as in Central


@api.get("/roles/<ref>")
def get_role(ref: str) -> ResponseReturnValue:
    return jsonify(find_role(ref).as_json())


# ---- form assignments (app users) ------------------------------------------------------------------------


def _assigned_app_users(form: Form) -> list[AppUser]:
    return list(
        db.session().scalars(
            select(AppUser)
            .join(FormAssignment, FormAssignment.app_user_id == AppUser.id)
            .where(FormAssignment.form_id == form.id)
            .order_by(AppUser.id)
        )
    )


def _readable_form(project_id: int, xml_form_id: str) -> Form:
    auth.require_project_role(project_id, *FORM_ASSIGNERS)
    find_project(db.session(), project_id)
    return find_form(db.session(), project_id, xml_form_id)


@api.get(FORM)
def list_form_assignments(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    return jsonify(_pairs([(app_user_json(a), APP_USER.id) for a in _assigned_app_users(form)]))


@api.get(f"{FORM}/<role_ref>")
def list_form_role_actors(project_id: int, xml_form_id: str, role_ref: str) -> ResponseReturnValue:
    form = _readable_form(project_id, xml_form_id)
    role = find_role(role_ref)
    # Only app users are assigned to forms in Sarhad; other roles have no one on a form.
    return jsonify([app_user_json(a) for a in _assigned_app_users(form)] if role is APP_USER else [])


def _form_assignment_target(
    project_id: int, xml_form_id: str, role_ref: str, actor_id: int
) -> tuple[User, Form, AppUser]:
    user = auth.require_project_role(project_id, *FORM_ASSIGNERS)
    session = db.session()
    project = find_project(session, project_id)
    form = find_form(session, project_id, xml_form_id)
    if find_role(role_ref) is not APP_USER:
        raise errors.bad_request(
            "On a form Sarhad assigns only app users (role 2, app-user); web users' roles belong to the "
            "project: /v1/projects/{p}/assignments/{role}/{userId}.",
            roleId=role_ref,
        )
    return user, form, devices.find_app_user(session, project, actor_id)


@api.post(f"{FORM}/<role_ref>/<int:actor_id>")
@db.write_request
def assign_form_role(project_id: int, xml_form_id: str, role_ref: str, actor_id: int) -> ResponseReturnValue:
    user, form, app_user = _form_assignment_target(project_id, xml_form_id, role_ref, actor_id)
    devices.assign_form(db.session(), app_user, form, user)
    return jsonify({"success": True})


@api.delete(f"{FORM}/<role_ref>/<int:actor_id>")
@db.write_request
def revoke_form_role(project_id: int, xml_form_id: str, role_ref: str, actor_id: int) -> ResponseReturnValue:
    user, form, app_user = _form_assignment_target(project_id, xml_form_id, role_ref, actor_id)
    devices.unassign_form(db.session(), app_user, form, user)
    return jsonify({"success": True})


@api.get(f"{PROJECT}/forms")
@api.get(f"{PROJECT}/forms/<role_ref>")
def list_project_form_assignments(project_id: int, role_ref: str | None = None) -> ResponseReturnValue:
    auth.require_project_role(project_id, *FORM_ASSIGNERS)
    find_project(db.session(), project_id)
    if role_ref is not None and find_role(role_ref) is not APP_USER:
        return jsonify([])
    rows = db.session().execute(
        select(AppUser, Form.xml_form_id)
        .join(FormAssignment, FormAssignment.app_user_id == AppUser.id)
        .join(Form, Form.id == FormAssignment.form_id)
        .where(Form.project_id == project_id, Form.deleted_at.is_(None))
        .order_by(Form.xml_form_id, AppUser.id)
    )
    key = "actor" if _extended() else "actorId"
    return jsonify(
        [
            {key: app_user_json(a) if _extended() else a.id, "xmlFormId": form_id, "roleId": APP_USER.id}
            for a, form_id in rows
        ]
    )


# ---- project assignments (web users) ---------------------------------------------------------------------


def _project_roles(project_id: int) -> list[tuple[User, ProjectRole]]:
    rows = db.session().execute(
        select(User, ProjectRole)
        .join(ProjectRole, ProjectRole.user_id == User.id)
        .where(ProjectRole.project_id == project_id, User.deleted_at.is_(None))
        .order_by(User.id)
    )
    return [(u, r) for u, r in rows]


@api.get(PROJECT)
def list_project_assignments(project_id: int) -> ResponseReturnValue:
    auth.require_project_role(project_id, *FORM_ASSIGNERS)
    find_project(db.session(), project_id)
    pairs = [(user_actor_json(u), role_for_project_role(r.role).id) for u, r in _project_roles(project_id)]
    return jsonify(_pairs(pairs))


@api.get(f"{PROJECT}/<role_ref>")
def list_project_role_actors(project_id: int, role_ref: str) -> ResponseReturnValue:
    auth.require_project_role(project_id, *FORM_ASSIGNERS)
    find_project(db.session(), project_id)
    role = find_role(role_ref)
    return jsonify([user_actor_json(u) for u, r in _project_roles(project_id) if r.role == role.project_role])


def _project_role_target(project_id: int, role_ref: str, actor_id: int) -> tuple[User, CentralRole, User]:
    assigner = auth.require_project_role(project_id, *PROJECT_ASSIGNERS)
    find_project(db.session(), project_id)
    role = find_role(role_ref)
    if role.project_role is None:
        raise errors.bad_request(
            f"The role {role.system!r} is not given in a project: use manager, coordinator or viewer "
            "(app users are assigned to forms).",
            roleId=role_ref,
        )
    target = db.session().get(User, actor_id)
    if target is None or target.deleted_at is not None:
        raise errors.not_found(f"There is no user {actor_id}.")
    return assigner, role, target


@api.post(f"{PROJECT}/<role_ref>/<int:actor_id>")
@db.write_request
def assign_project_role(project_id: int, role_ref: str, actor_id: int) -> ResponseReturnValue:
    assigner, role, target = _project_role_target(project_id, role_ref, actor_id)
    session = db.session()
    held = session.get(ProjectRole, (target.id, project_id))
    if held is not None:
        current = role_for_project_role(held.role)
        detail = "already" if current is role else f"already a {current.system} (revoke that first)"
        raise errors.conflict(f"{target.display_name} is {detail} in this project.", roleId=current.id)
    session.add(ProjectRole(user_id=target.id, project_id=project_id, role=role.project_role))
    audit.record(
        session,
        "user.assignment.create",
        actor=assigner,
        project_id=project_id,
        target_type="user",
        target_id=target.id,
        role=role.project_role,
    )
    return jsonify({"success": True})


@api.delete(f"{PROJECT}/<role_ref>/<int:actor_id>")
@db.write_request
def revoke_project_role(project_id: int, role_ref: str, actor_id: int) -> ResponseReturnValue:
    assigner, role, target = _project_role_target(project_id, role_ref, actor_id)
    session = db.session()
    held = session.get(ProjectRole, (target.id, project_id))
    if held is None or held.role != role.project_role:
        raise errors.not_found(f"{target.display_name} does not hold the role {role.system!r} here.")
    session.delete(held)
    audit.record(
        session,
        "user.assignment.delete",
        actor=assigner,
        project_id=project_id,
        target_type="user",
        target_id=target.id,
        role=role.project_role,
    )
    return jsonify({"success": True})
