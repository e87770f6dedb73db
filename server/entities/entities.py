"""Entities of an entity list and their versions: the rules and the store, no HTTP.

The rules are Central's, so that pyodk and Central's own clients meet the same answers:

- an entity has a UUID (version 4; ``uuid:`` before it is dropped, upper case is lowered), a label
  that is not blank, and properties whose values are strings; a property the list does not have is
  refused (400.28), as is any other key beside ``uuid``, ``label`` and ``data`` (400.31);
- every change makes a new version (1, 2, ...), keeping the label and the properties it left, what
  the change itself carried, who made it, when, with which client and from which source;
- an update names the version it was made against (``baseVersion``); another version than the
  current one is refused with 409.15 unless it is forced, so an update never silently overwrites one
  it did not see;
- a deleted entity is kept with its history (soft delete) and leaves every list, CSV and feed.

Every change is in the audit log (``entity.create``, ``entity.update.version``,
``entity.update.resolve``, ``entity.delete``, ``entity.restore``) with the entity's UUID and list.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from server import audit, errors
from server.models import AppUser, Entity, EntityList, EntityVersion, User, utcnow

_UUID_V4 = re.compile(
    r"^(uuid:)?([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})$", re.IGNORECASE
)
BODY_KEYS = ("label", "uuid", "data")
MAX_USER_AGENT = 255


invalid_type = errors.invalid_type


invalid_entity = errors.invalid_entity


version_conflict = errors.entity_version_conflict


def normalize_uuid(raw: str) -> str:
    if not raw.strip():
        raise errors.missing_parameter("uuid")
    found = _UUID_V4.match(raw)
    if found is None:
        raise invalid_type("uuid", "valid version 4 UUID")
    return found.group(2).lower()


@dataclass
class Change:
    """What one request asks of an entity, checked against the list's properties."""

    label: str | None
    data: dict[str, str] = field(default_factory=dict)
    uuid: str | None = None

    @property
    def received(self) -> dict[str, str]:
        """Central's ``dataReceived``: the properties sent, and the label when one was."""
        return {**self.data, **({"label": self.label} if self.label is not None else {})}


def read_change(body: Any, property_names: Sequence[str], *, new: bool) -> Change:
    """One entity as a client sent it (``{uuid?, label, data}``), or a 400 saying what is wrong."""
    if not isinstance(body, Mapping):
        raise errors.bad_request("An entity is a JSON object with 'label' and 'data'.")
    unexpected = [k for k in body if k not in BODY_KEYS]
    if unexpected:
        raise errors.unexpected_parameters(
            f"Expected parameters: ({', '.join(BODY_KEYS)}). Got ({', '.join(map(str, body))}).",
            expected=list(BODY_KEYS),
            actual=list(body),
        )
    change = Change(label=None)
    if new:
        raw_uuid = body.get("uuid")
        if raw_uuid is not None and raw_uuid != "" and not isinstance(raw_uuid, str):
            raise invalid_type("uuid", "string")
        change.uuid = normalize_uuid(raw_uuid) if raw_uuid else str(uuidlib.uuid4())
    label = body.get("label")
    if label is not None:
        if not isinstance(label, str):
            raise invalid_type("label", "string")
        if not label.strip():
            raise errors.unexpected_value(
                "Unexpected label value (empty string); Label cannot be blank.",
                field="label",
                value="(empty string)",
            )
        change.label = label
    elif new:
        raise errors.missing_parameter("label")
    data = body.get("data")
    if data is None and label is None:
        raise invalid_entity("No entity data or label provided.")
    if data is not None:
        if not isinstance(data, Mapping):
            raise invalid_type("data", "object")
        for key, value in data.items():
            if not isinstance(value, str):
                raise invalid_type(key, "string")
            if key not in property_names:
                raise invalid_entity(f"You specified the dataset property [{key}] which does not exist.")
            change.data[key] = value
    return change


@dataclass(frozen=True)
class Origin:
    """Who makes a change, with which client, from which source (the submission version, for a change
    made by a submission)."""

    actor: User | AppUser | None
    user_agent: str | None
    source: dict[str, Any] = field(default_factory=dict)
    submission_version_id: int | None = None

    @property
    def creator_id(self) -> int | None:
        # Devices (app users) are not web users: the version names them in its source and the audit.
        return self.actor.id if isinstance(self.actor, User) else None


@dataclass(frozen=True)
class Branch:
    """Where an update sits among offline changes (entities spec 2024.1)."""

    base_version: int
    branch_id: str | None = None
    trunk_version: int | None = None
    branch_base_version: int | None = None
    conflict: str | None = None  # the entity's conflict flag after this update
    conflicting_properties: list[str] | None = None


def _user_agent(raw: str | None) -> str | None:
    return raw[:MAX_USER_AGENT] if raw and raw.strip() else None


def _record(session: Session, action: str, entity_list: EntityList, entity: Entity, origin: Origin) -> None:
    audit.record(
        session,
        action,
        actor=origin.actor,
        project_id=entity_list.project_id,
        target_type="entity",
        target_id=entity.uuid,
        dataset=entity_list.name,
        version=entity.version,
        source=origin.source,
    )


def _new_entity(entity_list: EntityList, change: Change, origin: Origin) -> Entity:
    assert change.uuid is not None and change.label is not None
    now = utcnow()
    creator_id = origin.creator_id
    entity = Entity(
        entity_list_id=entity_list.id,
        uuid=change.uuid,
        label=change.label,
        data=dict(change.data),
        version=1,
        created_at=now,
        created_by_id=creator_id,
    )
    entity.versions.append(
        EntityVersion(
            version=1,
            base_version=None,
            label=change.label,
            data=dict(change.data),
            data_received=change.received,
            created_at=now,
            created_by_id=creator_id,
            user_agent=_user_agent(origin.user_agent),
            source=origin.source,
            submission_version_id=origin.submission_version_id,
        )
    )
    return entity


def _duplicate(uuids: Sequence[str]) -> errors.Problem:
    return errors.conflict(
        f"An entity with UUID {uuids[0]!r} already exists in this entity list.",
        fields="uuid",
        values=", ".join(uuids[:10]),
    )


def create_entities(
    session: Session, entity_list: EntityList, changes: Sequence[Change], origin: Origin
) -> list[Entity]:
    """Add new entities, all or none: a UUID already used in the list (even by a deleted entity) or
    twice in ``changes`` is 409.3."""
    uuids = [c.uuid for c in changes if c.uuid is not None]
    repeated = sorted({u for u in uuids if uuids.count(u) > 1}) if len(set(uuids)) != len(uuids) else []
    if repeated:
        raise _duplicate(repeated)
    taken: list[str] = []
    for start in range(0, len(uuids), 500):  # IN lists of bounded size on every database
        chunk = uuids[start : start + 500]
        taken += session.scalars(
            select(Entity.uuid).where(Entity.entity_list_id == entity_list.id, Entity.uuid.in_(chunk))
        )
    if taken:
        raise _duplicate(taken)
    entities = [_new_entity(entity_list, c, origin) for c in changes]
    try:
        with session.begin_nested():  # two requests with the same UUID at once: the second is a 409
            session.add_all(entities)
            session.flush()
    except IntegrityError:
        raise _duplicate(uuids) from None
    for entity in entities:
        _record(session, "entity.create", entity_list, entity, origin)
    return entities


def find_entity(
    session: Session, entity_list: EntityList, raw_uuid: str, *, lock: bool = False, deleted: bool = False
) -> Entity:
    """A live entity of the list by its UUID (a deleted one with ``deleted``), or 404."""
    found = _UUID_V4.match(raw_uuid)
    entity = None
    if found is not None:
        query = select(Entity).where(
            Entity.entity_list_id == entity_list.id,
            Entity.uuid == found.group(2).lower(),
            Entity.deleted_at.is_not(None) if deleted else Entity.deleted_at.is_(None),
        )
        entity = session.scalar(query.with_for_update() if lock else query)
    if entity is None:
        raise errors.not_found(
            f"There is no entity {raw_uuid[:80]!r} in the entity list {entity_list.name!r}."
        )
    return entity


def list_entities(session: Session, entity_list: EntityList, *, deleted: bool = False) -> list[Entity]:
    """The list's entities that are not deleted (only the deleted ones with ``deleted``), newest first
    (as Central lists them)."""
    gone = Entity.deleted_at.is_not(None) if deleted else Entity.deleted_at.is_(None)
    return list(
        session.scalars(
            select(Entity)
            .where(Entity.entity_list_id == entity_list.id, gone)
            .order_by(Entity.created_at.desc(), Entity.id.desc())
            .options(selectinload(Entity.current))
        )
    )


def check_base_version(entity: Entity, base_version: str | None, force: bool) -> None:
    """An update must name the current version, unless forced (Central's 409.15)."""
    if not force and base_version != str(entity.version):
        raise version_conflict(entity.version, base_version)


def check_resolvable(entity: Entity, base_version: str | None, force: bool) -> None:
    """A conflict can be marked resolved when there is one, by someone who saw the current version
    (Central's ``?resolve=true``: 400.32 without a conflict, 409.15 on another version)."""
    if entity.conflict is None:
        raise errors.no_conflict()
    check_base_version(entity, base_version, force)


def update_entity(
    session: Session,
    entity_list: EntityList,
    entity: Entity,
    change: Change,
    origin: Origin,
    branch: Branch | None = None,
) -> Entity:
    """A new version of ``entity``: the label and properties it sets, the others kept. ``branch`` says
    which version a submission's update was made against, when it was made apart (offline)."""
    now = utcnow()
    base = entity.version if branch is None else branch.base_version
    if branch is not None:
        entity.conflict = branch.conflict
    entity.version = entity.version + 1
    if change.label is not None:
        entity.label = change.label
    entity.data = {**entity.data, **change.data}
    entity.updated_at = now
    session.add(  # not through entity.versions, which would read the whole history first
        EntityVersion(
            entity_id=entity.id,
            version=entity.version,
            base_version=base,
            label=entity.label,
            data=dict(entity.data),
            data_received=change.received,
            created_at=now,
            created_by_id=origin.creator_id,
            user_agent=_user_agent(origin.user_agent),
            source=origin.source,
            submission_version_id=origin.submission_version_id,
            branch_id=branch.branch_id if branch else None,
            trunk_version=branch.trunk_version if branch else None,
            branch_base_version=branch.branch_base_version if branch else None,
            conflicting_properties=branch.conflicting_properties if branch else None,
        )
    )
    session.flush()
    session.expire(entity, ["current", "versions"])
    _record(session, "entity.update.version", entity_list, entity, origin)
    return entity


def resolve_conflict(session: Session, entity_list: EntityList, entity: Entity, origin: Origin) -> Entity:
    """Mark the entity's conflict as seen and settled (Central's ``?resolve=true``)."""
    entity.conflict = None
    session.flush()
    _record(session, "entity.update.resolve", entity_list, entity, origin)
    return entity


def delete_entity(session: Session, entity_list: EntityList, entity: Entity, origin: Origin) -> None:
    entity.deleted_at = utcnow()
    session.flush()
    _record(session, "entity.delete", entity_list, entity, origin)


def restore_entity(session: Session, entity_list: EntityList, entity: Entity, origin: Origin) -> None:
    """Bring a deleted entity back as it was (Central's restore): same UUID, version and history."""
    entity.deleted_at = None
    entity.updated_at = utcnow()
    session.flush()
    _record(session, "entity.restore", entity_list, entity, origin)


@dataclass(frozen=True)
class Summary:
    """What Central's extended list metadata says of a list's entities."""

    entities: int
    conflicts: int
    last_entity: Any


def summarize(session: Session, entity_list: EntityList) -> Summary:
    live = (Entity.entity_list_id == entity_list.id, Entity.deleted_at.is_(None))
    count, conflicts, last = session.execute(
        select(
            func.count(Entity.id),
            func.count(Entity.conflict),
            func.max(Entity.created_at),  # Central: when the newest entity was created
        ).where(*live)
    ).one()
    return Summary(int(count or 0), int(conflicts or 0), last)
