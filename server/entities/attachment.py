"""An entity list as the CSV file a form reads (``select_one_from_file concerns.csv``).

The columns are Central's for a form attachment: ``name`` (the entity's UUID, what a choice saves),
``label``, ``__version`` (what an update's ``baseVersion`` is computed from on the tablet), then the
list's properties in their order. Deleted entities are left out. The manifest advertises the md5 of
these very bytes, so Collect downloads the file again exactly when the list has changed.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Entity, EntityProperty


@dataclass(frozen=True)
class ListFile:
    data: bytes

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


def list_file(session: Session, entity_list_id: int) -> ListFile:
    names = list(
        session.scalars(
            select(EntityProperty.name)
            .where(EntityProperty.entity_list_id == entity_list_id)
            .order_by(EntityProperty.id)
        )
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "label", "__version", *names])
    rows = session.execute(
        select(Entity.uuid, Entity.label, Entity.version, Entity.data)
        .where(Entity.entity_list_id == entity_list_id, Entity.deleted_at.is_(None))
        .order_by(Entity.created_at, Entity.id)
    )
    for uuid, label, version, data in rows:
        writer.writerow([uuid, label, version, *((data or {}).get(n, "") for n in names)])
    return ListFile(out.getvalue().encode("utf-8"))
