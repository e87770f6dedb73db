"""Entity lists central → hub (``sarhad-sync pull-forms``): what central sends, and how a hub takes it.

A hub's tablets read the lists of their project as form attachments, so a hub keeps a copy of
central's lists. Changes a hub makes itself come from submissions, which ``push`` brings to central,
where ingest applies them again by the same rules (offline branches, held updates, conflicts). Central
is therefore the truth, and a hub takes central's state of an entity when central is at least as far:

- a list, a property or an entity the hub does not have is added;
- an entity whose version at central is the same as or later than the hub's takes central's label,
  properties, version, conflict flag and deletion; a version with that number is recorded with
  ``source = {"pulled": ...}`` (the hub keeps what it made itself, central has the full history);
- an entity the hub has moved further than central (submissions not pushed yet) is left as it is:
  its changes reach central with the next push, and the next pull brings back central's verdict.

Because a hub numbers its versions as central does after each pull, the ``baseVersion`` a tablet at
the hub sends names the same version at central; an update made at two hubs against one version is
then applied at central against that version, and flagged as a conflict, both versions kept.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.schemas import iso
from server.entities import lists
from server.entities.from_submissions import release_held
from server.models import Entity, EntityList, EntityVersion, Project, utcnow


def export_lists(session: Session, project: Project) -> list[dict[str, Any]]:
    """Every list of the project with its properties and every entity's current state."""
    out = []
    for entity_list in lists.list_entity_lists(session, project):
        entities = session.scalars(
            select(Entity).where(Entity.entity_list_id == entity_list.id).order_by(Entity.id)
        )
        out.append(
            {
                "name": entity_list.name,
                "approvalRequired": entity_list.approval_required,
                "properties": [p.name for p in entity_list.properties],
                "entities": [
                    {
                        "uuid": e.uuid,
                        "label": e.label,
                        "data": e.data,
                        "version": e.version,
                        "conflict": e.conflict,
                        "createdAt": iso(e.created_at),
                        "deletedAt": iso(e.deleted_at),
                    }
                    for e in entities
                ],
            }
        )
    return out


def _when(raw: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None


def import_lists(session: Session, project: Project, payload: list[dict[str, Any]]) -> int:
    """Take central's lists (see the module's rules); returns how many entities changed here."""
    changed = 0
    for item in payload:
        entity_list = session.scalar(
            select(EntityList).where(EntityList.project_id == project.id, EntityList.name == item["name"])
        ) or lists.create_entity_list(session, project, item["name"], bool(item["approvalRequired"]), None)
        entity_list.approval_required = bool(item["approvalRequired"])
        for prop in item["properties"]:
            if all(p.name != prop for p in entity_list.properties):
                lists.add_property(session, entity_list, prop, None)
        for central in item["entities"]:
            changed += _take(session, entity_list, central)
    session.flush()
    return changed


def _take(session: Session, entity_list: EntityList, central: dict[str, Any]) -> int:
    entity = session.scalar(
        select(Entity).where(Entity.entity_list_id == entity_list.id, Entity.uuid == central["uuid"])
    )
    version = int(central["version"])
    if entity is None:
        entity = Entity(
            entity_list_id=entity_list.id,
            uuid=central["uuid"],
            label=central["label"],
            data=dict(central["data"]),
            version=version,
            created_at=_when(central["createdAt"]) or utcnow(),
        )
        session.add(entity)
        session.flush()
    elif version < entity.version or (
        version == entity.version
        and (entity.label, entity.data, entity.conflict)
        == (central["label"], central["data"], central["conflict"])
        and (entity.deleted_at is None) == (central["deletedAt"] is None)
    ):
        return 0  # the hub is further (not pushed yet), or already the same
    entity.label, entity.data, entity.version = central["label"], dict(central["data"]), version
    entity.conflict = central["conflict"]
    entity.deleted_at = _when(central["deletedAt"])
    entity.updated_at = utcnow()
    row = session.scalar(
        select(EntityVersion).where(EntityVersion.entity_id == entity.id, EntityVersion.version == version)
    )
    if row is None:
        row = EntityVersion(entity_id=entity.id, version=version, data_received={}, created_at=utcnow())
        session.add(row)
    row.label, row.data, row.source = central["label"], dict(central["data"]), {"pulled": "central"}
    session.flush()
    session.expire(entity, ["current", "versions"])
    # An update held at the hub may have been waiting for this very version.
    release_held(session, entity_list.project_id, entity)
    return 1
