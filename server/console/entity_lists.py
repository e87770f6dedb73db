"""Entity lists in the console (issue 13): for coordinators following concerns and action plans.

- a project's lists: name, number of entities, how many are in conflict, whether a submission's entity
  waits for approval, and the properties;
- one list's entities: label, properties, version and a conflict marker; filtered by one property's
  value (``status`` = ``open``, ``district`` = …) or to those in conflict; 50 a page by key (created,
  id), newest first, as the API lists them;
- one entity: its properties and every version — what changed from the version before, made by which
  submission (linked) or user, when — and, when two changes were made apart on the same version, the
  conflict with *Mark as resolved* (the API's ``PATCH …?resolve=true&baseVersion=…``, same checks, same
  audit row).

Who may do what is the API's: any role in the project reads (entity lists hold no personal data: a
personal question cannot be saved to one), administrators and coordinators resolve. Device names are
pseudonymised for a role that sees pseudonyms, as on the submissions pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from server import auth, db, errors
from server.api.entity_lists import WRITE_ROLES
from server.api.submissions import shown_identity
from server.console import console
from server.console.pages import role_in
from server.console.session import require_signed_in
from server.console.submissions import Cursor
from server.datasets.redact import Access, access_for
from server.entities import entities as store
from server.entities.lists import find_entity_list, list_entity_lists
from server.models import (
    Entity,
    EntityList,
    EntityVersion,
    Form,
    Project,
    Submission,
    SubmissionVersion,
    User,
)
from server.projects import find_project

PAGE_SIZE = 50
LISTS = "/projects/<int:project_id>/entity-lists"
ONE = f"{LISTS}/<name>/entities/<entity_uuid>"


@dataclass(frozen=True)
class ListAccess:
    user: User
    project: Project
    access: Access


def _access(project_id: int, *roles: str) -> ListAccess:
    require_signed_in()
    user = auth.require_project_role(project_id, *roles)
    session = db.session()
    project = find_project(session, project_id)
    return ListAccess(user, project, access_for(session, user, project))


def _names(entity_list: EntityList) -> list[str]:
    return [p.name for p in entity_list.properties]


@console.get(LISTS)
def entity_lists_page(project_id: int) -> ResponseReturnValue:
    la = _access(project_id)
    session = db.session()
    rows = [(el, store.summarize(session, el)) for el in list_entity_lists(session, la.project)]
    return render_template("entity_lists.html", project=la.project, lists=rows)


@dataclass(frozen=True)
class EntityFilter:
    """One property equal to a value, and/or only the entities in conflict."""

    prop: str | None
    value: str
    conflicts: bool

    @classmethod
    def read(cls, args: Any, properties: list[str]) -> EntityFilter:
        prop = args.get("prop") or None
        if prop is not None and prop not in properties:
            raise errors.bad_request(_("This list has no property %(name)s.", name=prop))
        return cls(prop, args.get("value", ""), args.get("conflicts") == "1")


@console.get(f"{LISTS}/<name>")
def entity_list_page(project_id: int, name: str) -> ResponseReturnValue:
    la = _access(project_id)
    session = db.session()
    entity_list = find_entity_list(session, project_id, name)
    properties = _names(entity_list)
    chosen = EntityFilter.read(request.args, properties)
    cursor = Cursor.decode(request.args.get("after"))
    stmt = select(Entity).where(Entity.entity_list_id == entity_list.id, Entity.deleted_at.is_(None))
    if chosen.prop is not None:
        stmt = stmt.where(Entity.data[chosen.prop].as_string() == chosen.value)
    if chosen.conflicts:
        stmt = stmt.where(Entity.conflict.is_not(None))
    if cursor is not None:
        stmt = stmt.where(tuple_(Entity.created_at, Entity.id) < (cursor.created_at, cursor.id))
    found = list(
        session.scalars(stmt.order_by(Entity.created_at.desc(), Entity.id.desc()).limit(PAGE_SIZE + 1))
    )
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    args = {k: v for k, v in request.args.items() if k != "after" and v}
    next_args = {**args, "after": Cursor(found[-1].created_at, found[-1].id).encode()} if more else None
    return render_template(
        "entity_list.html",
        project=la.project,
        entity_list=entity_list,
        properties=properties,
        summary=store.summarize(session, entity_list),
        entities=found,
        chosen=chosen,
        first_page=cursor is None,
        first_args=args,
        next_args=next_args,
    )


@dataclass(frozen=True)
class Change:
    name: str  # a property, or "label"
    before: str | None
    after: str | None


@dataclass(frozen=True)
class VersionRow:
    version: EntityVersion
    changes: list[Change]
    by: str
    submission: tuple[str, str] | None  # (xmlFormId, instanceId) of the submission that made it
    conflict: str | None  # "hard" / "soft": made on an older version than the one it followed


def _changes(properties: list[str], before: EntityVersion | None, after: EntityVersion) -> list[Change]:
    old: dict[str, Any] = {**(before.data if before else {}), "label": before.label if before else None}
    new: dict[str, Any] = {**after.data, "label": after.label}
    names = ["label", *properties, *sorted(k for k in new if k not in properties and k != "label")]
    return [Change(n, old.get(n), new.get(n)) for n in names if old.get(n) != new.get(n)]


def _submissions(session: Session, versions: list[EntityVersion]) -> dict[int, tuple[str, str]]:
    """The (form, first instanceID) of each submission version that made a version: its console address."""
    ids = {v.submission_version_id for v in versions if v.submission_version_id is not None}
    if not ids:
        return {}
    rows = session.execute(
        select(SubmissionVersion.id, Form.xml_form_id, Submission.instance_id)
        .join(Submission, Submission.id == SubmissionVersion.submission_id)
        .join(Form, Form.id == Submission.form_id)
        .where(SubmissionVersion.id.in_(ids), Submission.deleted_at.is_(None))
    )
    return {sv_id: (form_id, instance_id) for sv_id, form_id, instance_id in rows}


def _by(la: ListAccess, version: EntityVersion) -> str:
    source = version.source or {}
    device = source.get("appUser")
    if isinstance(device, dict) and device.get("displayName"):
        return _("Device %(name)s", name=shown_identity(la.access, str(device["displayName"])))
    if version.creator is not None:
        return version.creator.display_name
    upload = source.get("name")
    return _("File %(name)s", name=upload) if upload else ""


def _version_rows(la: ListAccess, entity: Entity, properties: list[str]) -> list[VersionRow]:
    versions = list(entity.versions)
    by_number = {v.version: v for v in versions}
    made_by = _submissions(db.session(), versions)
    rows = []
    for v in versions:
        previous = by_number.get(v.version - 1)
        conflict = None
        if v.base_version is not None and previous is not None and v.base_version != previous.version:
            conflict = "hard" if v.conflicting_properties else "soft"
        rows.append(
            VersionRow(
                v,
                _changes(properties, previous, v),
                _by(la, v),
                made_by.get(v.submission_version_id) if v.submission_version_id else None,
                conflict,
            )
        )
    return list(reversed(rows))  # newest first


@console.get(ONE)
def entity_page(project_id: int, name: str, entity_uuid: str) -> ResponseReturnValue:
    la = _access(project_id)
    session = db.session()
    entity_list = find_entity_list(session, project_id, name)
    entity = store.find_entity(session, entity_list, entity_uuid)
    properties = _names(entity_list)
    return render_template(
        "entity.html",
        project=la.project,
        entity_list=entity_list,
        entity=entity,
        properties=properties,
        versions=_version_rows(la, entity, properties),
        may_resolve=role_in(la.user, project_id) in WRITE_ROLES,
        resolved=request.args.get("resolved") == "1",
    )


@console.post(f"{ONE}/resolve")
@db.write_request
def resolve_entity(project_id: int, name: str, entity_uuid: str) -> ResponseReturnValue:
    """Mark the entity's conflict resolved, against the version the page showed (a change that arrived
    since is a 409, so nobody settles a conflict they have not seen)."""
    la = _access(project_id, *WRITE_ROLES)
    session = db.session()
    entity_list = find_entity_list(session, project_id, name)
    entity = store.find_entity(session, entity_list, entity_uuid, lock=True)
    store.check_resolvable(entity, request.form.get("base_version"), force=False)
    origin = store.Origin(la.user, request.headers.get("User-Agent"), {"via": "console"})
    store.resolve_conflict(session, entity_list, entity, origin)
    return redirect(
        url_for("console.entity_page", project_id=project_id, name=name, entity_uuid=entity.uuid, resolved=1)
    )
