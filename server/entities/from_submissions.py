"""Entities created and updated by submissions, in the transaction that stores the submission.

Ingest calls :func:`apply_submission` for every new submission and every edit, and the review routes
for every approval. The rules are Central's (v2026), so that a form behaves as it does there:

- a submission of a form that declares no entity changes nothing here; nor does an encrypted one;
- a **create** makes a new entity, on receipt, or on approval when the list requires approval; a
  **update** names the version it was made against (``baseVersion``) and applies on receipt (an
  approval never applies an update); a form that declares both tries the update first and creates when
  the entity does not exist yet;
- a submission that already made an entity version (or is held, below) is not applied again, so an
  edit or a later approval never applies the same change twice;
- **offline entities** (spec 2024.1): an update made on a device apart from the server carries its
  ``branchId`` and the server version it started from (``trunkVersion``). Its base is found by version
  within the branch; when that version has not arrived yet (submissions reach the server out of order,
  or a hub pushes later) the update is **held** in ``entity_backlog`` — never dropped — and applied as
  soon as the version it builds on is there;
- an update made against an older version than the current one is applied on top (its properties win)
  and the entity is flagged: ``hard`` conflict when it changes a property that changed on the server
  since its base, ``soft`` otherwise (also when an offline branch was interrupted by another change). A
  coordinator resolves it (``PATCH ...?resolve=true``); both versions stay in the history;
- a problem with one entity (unknown list or entity, blank label, a deleted entity...) applies none of
  the submission's entities and is recorded as an ``entity.error`` audit event naming the submission;
  the submission itself is kept as received.

Each change is audited (``entity.create``, ``entity.update.version``) with the submission's instanceID,
and each version keeps the submission version it came from.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server import audit, errors
from server.entities import entities as store
from server.entities.declarations import EntityData, EntityForm, extract, read_declarations
from server.models import (
    AppUser,
    Entity,
    EntityBacklog,
    EntityList,
    EntityVersion,
    Form,
    FormVersion,
    Submission,
    SubmissionVersion,
    User,
    utcnow,
)


class Event(enum.StrEnum):
    RECEIVED = "submission.create"
    EDITED = "submission.update.version"
    APPROVED = "submission.approve"
    BACKLOG = "submission.backlog.reprocess"
    CONVERTED = "dataset.update.convert"  # the list stopped requiring approval: pending ones now


@dataclass(frozen=True)
class Context:
    """The submission version being applied and who sent it."""

    project_id: int
    submission_version: SubmissionVersion
    actor: User | AppUser | None
    user_agent: str | None

    def origin(self, xml_form_id: str, event: Event) -> store.Origin:
        sv = self.submission_version
        source: dict[str, object] = {
            "event": str(event),
            "submission": {"instanceId": sv.instance_id, "xmlFormId": xml_form_id},
        }
        if isinstance(self.actor, AppUser):
            source["appUser"] = {"id": self.actor.id, "displayName": self.actor.display_name}
        return store.Origin(self.actor, self.user_agent, source, submission_version_id=sv.id)


_FORMS: dict[tuple[int, str], EntityForm | None] = {}


def entity_form(session: Session, form_version_id: int, sha256: str | None = None) -> EntityForm | None:
    """A published form version's entity declarations, cached by (id, XForm sha256): a published XForm
    never changes. With ``sha256`` known (ingest has it), a form already seen costs no query."""
    if sha256 is None:
        sha256 = session.scalar(select(FormVersion.sha256).where(FormVersion.id == form_version_id))
        if sha256 is None:
            return None
    key = (form_version_id, sha256)
    if key not in _FORMS:
        if len(_FORMS) > 512:
            _FORMS.clear()
        xml = session.scalar(select(FormVersion.xml).where(FormVersion.id == form_version_id)) or ""
        try:
            _FORMS[key] = read_declarations(xml) if "entity" in xml else None
        except errors.Problem:
            _FORMS[key] = None  # published before it was checked: it declares nothing we can apply
    return _FORMS[key]


def _already_applied(session: Session, submission_id: int) -> bool:
    made = session.scalar(
        select(func.count(EntityVersion.id))
        .join(SubmissionVersion, SubmissionVersion.id == EntityVersion.submission_version_id)
        .where(SubmissionVersion.submission_id == submission_id)
    )
    held = session.scalar(
        select(func.count(EntityBacklog.id))
        .join(SubmissionVersion, SubmissionVersion.id == EntityBacklog.submission_version_id)
        .where(SubmissionVersion.submission_id == submission_id)
    )
    return bool(made or held)


def apply_submission(session: Session, ctx: Context, xml_form_id: str, event: Event) -> list[Entity]:
    """Create or update the entities a submission version declares; see the module's rules."""
    sv = ctx.submission_version
    if sv.encrypted:
        return []
    form = entity_form(session, sv.form_version_id)
    if form is None:
        return []
    # A submission just created cannot have made anything yet; an edit or an approval may have.
    if event is not Event.RECEIVED and _already_applied(session, sv.submission_id):
        return []
    carried = extract(form, sv.xml)
    if not carried:
        return []
    lists = {
        el.name: el
        for el in session.scalars(
            select(EntityList).where(
                EntityList.project_id == ctx.project_id, EntityList.name.in_(form.list_names)
            )
        )
    }
    origin = ctx.origin(xml_form_id, event)
    applied: list[Entity] = []
    savepoint = session.begin_nested()
    try:
        for data in carried:
            entity_list = lists.get(data.dataset)
            if entity_list is None:
                raise errors.entity_list_not_found(data.dataset or "(none)")
            entity = _apply_one(session, entity_list, data, origin, event)
            if entity is not None:
                applied.append(entity)
    except errors.Problem as problem:
        savepoint.rollback()
        audit.record(
            session,
            "entity.error",
            actor=ctx.actor,
            project_id=ctx.project_id,
            target_type="submission",
            target_id=sv.instance_id,
            xmlFormId=xml_form_id,
            submissionVersionId=sv.id,
            problemCode=problem.code,
            errorMessage=problem.message,
        )
        return []
    savepoint.commit()
    for entity in applied:
        release_held(session, ctx.project_id, entity)
    return applied


def _apply_one(
    session: Session, entity_list: EntityList, data: EntityData, origin: store.Origin, event: Event
) -> Entity | None:
    for action in ("create", "update"):
        if data.flag(getattr(data, action)) and action not in data.actions:
            raise errors.entity_action_not_permitted(action, list(data.actions))
    uuid = store.normalize_uuid(data.id or "")
    if data.flag(data.update):
        try:
            return _update(session, entity_list, uuid, data, origin, event)
        except errors.Problem as problem:
            blank_base = problem.code == errors.Code.MISSING_PARAMETER and "baseVersion" in problem.message
            if data.flag(data.create) and (problem.code == errors.Code.ENTITY_NOT_FOUND or blank_base):
                return _create(session, entity_list, uuid, data, origin, event)
            raise
    if data.flag(data.create):
        return _create(session, entity_list, uuid, data, origin, event)
    return None


def _create(
    session: Session,
    entity_list: EntityList,
    uuid: str,
    data: EntityData,
    origin: store.Origin,
    event: Event,
) -> Entity | None:
    # An approval applies the creates a list that requires approval was waiting for, and nothing else.
    if entity_list.approval_required != (event is Event.APPROVED):
        return None
    if data.label is None or not data.label.strip():
        raise errors.missing_parameter("label")
    change = store.Change(label=data.label, data=dict(data.data), uuid=uuid)
    return store.create_entities(session, entity_list, [change], origin)[0]


def _integer(raw: str, name: str) -> int:
    if not raw.strip().isdigit():
        raise errors.invalid_type(name, "integer")
    return int(raw)


def _find(session: Session, entity_list: EntityList, uuid: str, *, lock: bool = False) -> Entity | None:
    query = select(Entity).where(Entity.entity_list_id == entity_list.id, Entity.uuid == uuid)
    return session.scalar(query.with_for_update() if lock else query)


def _base_version(
    session: Session, entity: Entity | None, base: int, branch_id: str | None, trunk: int | None
) -> EntityVersion | None:
    if entity is None:
        return None
    query = select(EntityVersion).where(EntityVersion.entity_id == entity.id)
    if branch_id is None or base == 1 or base == trunk:
        # Online, the start of a branch, or a branch on an entity made offline: a server version.
        return session.scalar(query.where(EntityVersion.version == base))
    # Further along an offline branch: the version this device made before, whatever its number here.
    return session.scalar(
        query.where(EntityVersion.branch_id == branch_id, EntityVersion.branch_base_version == base - 1)
    )


def _update(
    session: Session,
    entity_list: EntityList,
    uuid: str,
    data: EntityData,
    origin: store.Origin,
    event: Event,
) -> Entity | None:
    if event is Event.APPROVED:
        return None
    if not (data.base_version or "").strip():
        raise errors.missing_parameter("baseVersion")
    base = _integer(data.base_version or "", "baseVersion")
    branch_id = store.normalize_uuid(data.branch_id) if (data.branch_id or "").strip() else None
    trunk = None
    if (data.trunk_version or "").strip():
        if branch_id is None:
            raise errors.missing_parameter("branchId")
        trunk = _integer(data.trunk_version or "", "trunkVersion")
    entity = _find(session, entity_list, uuid, lock=True)
    if entity is not None and entity.deleted_at is not None:
        raise errors.entity_deleted(uuid)
    base_def = _base_version(session, entity, base, branch_id, trunk)
    if base_def is None:
        if branch_id is not None:
            _hold(session, entity_list, uuid, data, origin, branch_id, base)
            return None
        if entity is None:
            raise errors.entity_not_found(uuid, entity_list.name)
        raise errors.entity_base_version_not_found(str(base), uuid, entity_list.name)
    assert entity is not None
    if trunk is not None and trunk > entity.version:
        raise errors.entity_base_version_not_found(f"trunkVersion={trunk}", uuid, entity_list.name)
    label = data.label if data.label is not None and data.label.strip() else None
    change = store.Change(label=label, data=dict(data.data))
    conflict, conflicting = _conflict(session, entity, base_def, change, branch_id, trunk)
    branch = store.Branch(
        base_version=base_def.version,
        branch_id=branch_id,
        trunk_version=trunk,
        branch_base_version=base if branch_id is not None else None,
        conflict=conflict,
        conflicting_properties=conflicting,
    )
    return store.update_entity(session, entity_list, entity, change, origin, branch)


def _conflict(
    session: Session,
    entity: Entity,
    base_def: EntityVersion,
    change: store.Change,
    branch_id: str | None,
    trunk: int | None,
) -> tuple[str | None, list[str] | None]:
    """The entity's conflict flag after this update, and the properties it changes that the server
    changed too since the update's base (Central's rules; a hard conflict is never downgraded)."""
    current = entity.conflict
    if base_def.version != entity.version:
        latest = session.scalar(
            select(EntityVersion).where(
                EntityVersion.entity_id == entity.id, EntityVersion.version == entity.version
            )
        )
        assert latest is not None
        server_changed = {k: v for k, v in latest.data.items() if base_def.data.get(k) != v}
        if latest.label != base_def.label:
            server_changed["label"] = latest.label
        received = change.received
        conflicting = [k for k in received if k in server_changed and received[k] != server_changed[k]]
        if current != "hard":
            current = "hard" if conflicting else "soft"
        return current, conflicting
    if branch_id is not None and current != "hard":
        interrupted = session.scalar(
            select(func.count(EntityVersion.id)).where(
                EntityVersion.entity_id == entity.id,
                (EntityVersion.branch_id != branch_id) | EntityVersion.branch_id.is_(None),
                EntityVersion.version > (trunk or 1),
            )
        )
        if interrupted:
            current = "soft"
    return current, None


def _hold(
    session: Session,
    entity_list: EntityList,
    uuid: str,
    data: EntityData,
    origin: store.Origin,
    branch_id: str,
    base: int,
) -> None:
    assert origin.submission_version_id is not None
    session.add(
        EntityBacklog(
            entity_list_id=entity_list.id,
            entity_uuid=uuid,
            submission_version_id=origin.submission_version_id,
            entity_index=data.index,
            branch_id=branch_id,
            base_version=base,
            held_at=utcnow(),
        )
    )
    session.flush()
    audit.record(
        session,
        "submission.backlog.hold",
        actor=origin.actor,
        project_id=entity_list.project_id,
        target_type="entity",
        target_id=uuid,
        dataset=entity_list.name,
        baseVersion=base,
        branchId=branch_id,
        source=origin.source,
    )


def held(session: Session, entity_list: EntityList) -> Sequence[EntityBacklog]:
    return list(
        session.scalars(
            select(EntityBacklog)
            .where(EntityBacklog.entity_list_id == entity_list.id)
            .order_by(EntityBacklog.id)
        )
    )


def release_held(session: Session, project_id: int, entity: Entity) -> None:
    """Apply the updates held for ``entity`` whose base is now there, until none is left that can be."""
    entity_list = session.get(EntityList, entity.entity_list_id)
    assert entity_list is not None
    progressed = True
    while progressed:
        progressed = False
        waiting = session.scalars(
            select(EntityBacklog)
            .where(EntityBacklog.entity_list_id == entity_list.id, EntityBacklog.entity_uuid == entity.uuid)
            .order_by(EntityBacklog.base_version, EntityBacklog.id)
        ).all()
        for row in waiting:
            sv = session.get(SubmissionVersion, row.submission_version_id)
            assert sv is not None
            form = entity_form(session, sv.form_version_id)
            carried = extract(form, sv.xml) if form else []
            data = next((d for d in carried if d.index == row.entity_index), None)
            if data is None:
                continue
            branch_id = row.branch_id
            trunk = (
                _integer(data.trunk_version, "trunkVersion") if (data.trunk_version or "").strip() else None
            )
            if _base_version(session, entity, row.base_version, branch_id, trunk) is None:
                continue
            session.delete(row)
            session.flush()
            actor: User | AppUser | None = None
            if sv.app_user_id is not None:
                actor = session.get(AppUser, sv.app_user_id)
            elif sv.user_id is not None:
                actor = session.get(User, sv.user_id)
            ctx = Context(project_id, sv, actor, sv.user_agent)
            xml_form_id = session.scalar(select(Form.xml_form_id).where(Form.id == sv.form_id)) or ""
            origin = ctx.origin(xml_form_id, Event.BACKLOG)
            savepoint = session.begin_nested()
            try:
                _update(session, entity_list, entity.uuid, data, origin, Event.BACKLOG)
            except errors.Problem as problem:
                savepoint.rollback()
                audit.record(
                    session,
                    "entity.error",
                    actor=actor,
                    project_id=project_id,
                    target_type="submission",
                    target_id=sv.instance_id,
                    submissionVersionId=sv.id,
                    problemCode=problem.code,
                    errorMessage=problem.message,
                )
            else:
                savepoint.commit()
            progressed = True
            break


def apply_approval(
    session: Session, project_id: int, submission: Submission, xml_form_id: str, actor: User | None
) -> list[Entity]:
    """An approved submission creates the entities its lists were waiting for approval to create."""
    if submission.current_version_id is None:
        return []
    sv = session.get(SubmissionVersion, submission.current_version_id)
    assert sv is not None
    return apply_submission(session, Context(project_id, sv, actor, None), xml_form_id, Event.APPROVED)


def force_held(session: Session, entity_list: EntityList, actor: User | None) -> tuple[int, int]:
    """Apply the list's held updates now, on top of each entity's current version, flagging each a
    soft conflict (the version it was made against never arrived: a coordinator should look). An update
    of an entity that is not here at all stays held. Returns (applied, still held)."""
    applied = 0
    for row in held(session, entity_list):
        entity = _find(session, entity_list, row.entity_uuid, lock=True)
        if entity is None or entity.deleted_at is not None:
            continue
        sv = session.get(SubmissionVersion, row.submission_version_id)
        assert sv is not None
        form = entity_form(session, sv.form_version_id)
        data = next((d for d in (extract(form, sv.xml) if form else []) if d.index == row.entity_index), None)
        session.delete(row)
        session.flush()
        if data is None:
            continue
        xml_form_id = session.scalar(select(Form.xml_form_id).where(Form.id == sv.form_id)) or ""
        origin = Context(entity_list.project_id, sv, actor, sv.user_agent).origin(xml_form_id, Event.BACKLOG)
        origin.source["forced"] = True
        label = data.label if data.label is not None and data.label.strip() else None
        branch = store.Branch(
            base_version=entity.version,
            branch_id=row.branch_id,
            trunk_version=None,
            branch_base_version=row.base_version,
            conflict="hard" if entity.conflict == "hard" else "soft",
        )
        store.update_entity(
            session, entity_list, entity, store.Change(label=label, data=dict(data.data)), origin, branch
        )
        applied += 1
    return applied, len(held(session, entity_list))


def convert_pending(session: Session, entity_list: EntityList, actor: User | None) -> int:
    """The list no longer requires approval: create the entities its received, not yet approved (nor
    rejected) submissions were waiting to create (Central's ``?convert=true``). Returns how many."""
    made = 0
    pending = session.execute(
        select(Submission, Form.xml_form_id)
        .join(Form, Form.id == Submission.form_id)
        .where(
            Form.project_id == entity_list.project_id,
            Form.deleted_at.is_(None),
            Submission.review_state.not_in(["approved", "rejected"]),
        )
        .order_by(Submission.id)
    ).all()
    for submission, xml_form_id in pending:
        sv = (
            session.get(SubmissionVersion, submission.current_version_id)
            if submission.current_version_id
            else None
        )
        if sv is None:
            continue
        form = entity_form(session, sv.form_version_id)
        if form is None or entity_list.name not in form.list_names:
            continue
        context = Context(entity_list.project_id, sv, actor, None)
        made += len(apply_submission(session, context, xml_form_id, Event.CONVERTED))
    return made
