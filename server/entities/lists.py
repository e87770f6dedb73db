"""Entity lists (Central calls them datasets) and their properties: the rules, no HTTP.

Names follow Central's rules, so that a list made here can be named by a form's ``save_to`` and by
pyodk alike:

- a list name starts with a letter, ``_`` or ``:`` and goes on with letters, digits, ``_``, ``-`` or
  ``:``; it does not start with ``__`` and holds no ``.``;
- a property name starts with a letter or ``_`` and goes on with letters, digits, ``_``, ``-`` or
  ``.``; it does not start with ``__`` and is not ``name`` or ``label`` (in any case), which every
  entity has anyway.

A second list or property of the same name is refused with 409.3, as Central does.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server import audit, errors
from server.models import EntityList, EntityProperty, Project, User, utcnow

MAX_NAME_LENGTH = 255
_RESERVED_PROPERTIES = ("name", "label")


def _letter(c: str) -> bool:
    return c.isalpha()


def _digit(c: str) -> bool:
    return c in "0123456789"


def valid_list_name(name: str) -> bool:
    if not name or len(name) > MAX_NAME_LENGTH or name.startswith("__"):
        return False
    first, rest = name[0], name[1:]
    return (_letter(first) or first in ":_") and all(_letter(c) or _digit(c) or c in ":_-" for c in rest)


def valid_property_name(name: str) -> bool:
    lowered = name.lower()
    if not name or len(name) > MAX_NAME_LENGTH or lowered.startswith("__") or lowered in _RESERVED_PROPERTIES:
        return False
    first, rest = name[0], name[1:]
    return (_letter(first) or first == "_") and all(_letter(c) or _digit(c) or c in "._-" for c in rest)


def list_entity_lists(session: Session, project: Project) -> list[EntityList]:
    """The project's entity lists, by name (as Central orders them)."""
    return list(
        session.scalars(
            select(EntityList).where(EntityList.project_id == project.id).order_by(EntityList.name)
        )
    )


def find_entity_list(session: Session, project_id: int, name: str, *, lock: bool = False) -> EntityList:
    query = select(EntityList).where(EntityList.project_id == project_id, EntityList.name == name)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise errors.not_found(f"There is no entity list {name!r} in this project.")
    return found


def _insert(session: Session, row: EntityList | EntityProperty, duplicate: str) -> None:
    """Add ``row`` in a savepoint: when the same name arrives twice at once, the unique constraint
    refuses the second and its caller gets 409.3 instead of a failed transaction."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise errors.conflict(duplicate) from None


def create_entity_list(
    session: Session, project: Project, name: str, approval_required: bool, actor: User | None
) -> EntityList:
    if not valid_list_name(name):
        raise errors.bad_request(
            f"{name[:80]!r} is not a valid entity list name: it starts with a letter, '_' or ':' and goes on "
            "with letters, digits, '_', '-' or ':' (no '.', not starting with '__').",
            field="name",
        )
    existing = session.scalar(
        select(EntityList.id).where(EntityList.project_id == project.id, EntityList.name == name)
    )
    duplicate = f"An entity list named {name!r} already exists in this project."
    if existing is not None:
        raise errors.conflict(duplicate, name=name, projectId=project.id)
    entity_list = EntityList(
        project_id=project.id,
        name=name,
        approval_required=approval_required,
        created_by_id=actor.id if actor else None,
    )
    _insert(session, entity_list, duplicate)
    audit.record(
        session,
        "dataset.create",
        actor=actor,
        project_id=project.id,
        target_type="dataset",
        target_id=name,
        approvalRequired=approval_required,
    )
    return entity_list


def add_property(session: Session, entity_list: EntityList, name: str, actor: User | None) -> EntityProperty:
    if not valid_property_name(name):
        raise errors.bad_request(
            f"{name[:80]!r} is not a valid property name: it starts with a letter or '_' and goes on with "
            "letters, digits, '_', '-' or '.' (not 'name' or 'label', not starting with '__').",
            field="name",
        )
    duplicate = f"The entity list {entity_list.name!r} already has a property named {name!r}."
    if any(p.name == name for p in entity_list.properties):
        raise errors.conflict(duplicate, name=name, datasetName=entity_list.name)
    prop = EntityProperty(entity_list_id=entity_list.id, name=name, published_at=utcnow())
    _insert(session, prop, duplicate)
    session.refresh(entity_list, ["properties"])
    audit.record(
        session,
        "dataset.property.create",
        actor=actor,
        project_id=entity_list.project_id,
        target_type="dataset",
        target_id=entity_list.name,
        property=name,
    )
    return prop
