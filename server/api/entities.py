"""Entities of an entity list over ``/v1``, in Central's shapes (pyodk's ``entities``):

- ``GET|POST .../datasets/{name}/entities`` — list (no properties, as Central); create one
  ``{uuid?, label, data}`` or many ``{entities: [...], source: {name, size?}}``;
- ``GET|PATCH|DELETE .../entities/{uuid}`` — PATCH needs ``?baseVersion=<current>`` or ``?force=true``
  (409.15 otherwise); ``?resolve=true`` clears a conflict; ``?deleted=true`` on GETs reads deleted
  entities, ``POST .../entities/{uuid}/restore`` brings one back;
- ``GET .../entities/{uuid}/versions`` — every version with what changed;
- ``GET .../datasets/{name}/entities.csv``;
- OData: ``.../datasets/{name}.svc``, ``.svc/$metadata``, ``.svc/Entities``.

Any role in the project reads; admins and coordinators create, update and delete, as with lists.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from flask import Response, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from server import auth, db, errors
from server.api import api
from server.api.entity_lists import WRITE_ROLES
from server.api.odata import _absolute, _flag, _non_negative, _response, _service_root
from server.api.schemas import iso
from server.entities import entities as store
from server.entities.lists import find_entity_list
from server.entities.odata import EntityRow, RowFilter, Selection, edmx
from server.models import AuditEvent, Entity, EntityList, EntityVersion, User
from server.projects import find_project

LIST = "/projects/<int:project_id>/datasets/<name>"
ONE = f"{LIST}/entities/<entity_uuid>"
MAX_BULK = 50_000
STREAM_BATCH = 500


def _entity_list(project_id: int, name: str, *roles: str, lock: bool = False) -> tuple[User, EntityList]:
    user = auth.require_project_role(project_id, *roles)
    find_project(db.session(), project_id)
    return user, find_entity_list(db.session(), project_id, name, lock=lock)


def _extended() -> bool:
    return request.headers.get("X-Extended-Metadata", "").strip().lower() == "true"


def _user_json(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "id": user.id,
        "type": "user",
        "displayName": user.display_name,
        "createdAt": iso(user.created_at),
        "updatedAt": None,
        "deletedAt": iso(user.deleted_at),
    }


def _version_json(
    version: EntityVersion, current: bool, properties: list[str], with_data: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "label": version.label,
        "current": current,
        "createdAt": iso(version.created_at),
        "creatorId": version.created_by_id,
        "userAgent": version.user_agent,
        "version": version.version,
        "baseVersion": version.base_version,
        "conflictingProperties": version.conflicting_properties,
        "branchId": version.branch_id,
        "trunkVersion": version.trunk_version,
        "branchBaseVersion": version.branch_base_version,
    }
    if with_data:
        # Only the list's properties, in its order (Central picks them the same way).
        out["data"] = {p: version.data[p] for p in properties if p in version.data}
        out["dataReceived"] = version.data_received
    if _extended():
        out["creator"] = _user_json(version.creator)
    return out


def entity_json(entity: Entity, properties: list[str], *, with_data: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "uuid": entity.uuid,
        "creatorId": entity.created_by_id,
        "conflict": entity.conflict,
        "createdAt": iso(entity.created_at),
        "updatedAt": iso(entity.updated_at),
        "deletedAt": iso(entity.deleted_at),
        "currentVersion": _version_json(entity.current, True, properties, with_data),
    }
    if _extended():
        out["creator"] = _user_json(entity.creator)
    return out


def _names(entity_list: EntityList) -> list[str]:
    return [p.name for p in entity_list.properties]


def _origin(user: User, source: dict[str, Any] | None = None) -> store.Origin:
    return store.Origin(user, request.headers.get("User-Agent"), source or {})


def _json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise errors.bad_request("The request body must be JSON.")
    if b"\\u0000" in request.get_data():  # no text of ours holds a NUL; PostgreSQL could not store it
        raise errors.bad_request("The request body contains a NUL character (\\u0000).")
    return body


# ---- list, create -----------------------------------------------------------------------------------------


@api.get(f"{LIST}/entities")
def list_entities(project_id: int, name: str) -> ResponseReturnValue:
    _, entity_list = _entity_list(project_id, name)
    names = _names(entity_list)
    found = store.list_entities(db.session(), entity_list, deleted=_flag("deleted"))
    return jsonify([entity_json(e, names, with_data=False) for e in found])


def _bulk_source(raw: Any, count: int, user_agent: str | None) -> dict[str, Any]:
    if not raw:
        raise errors.missing_parameter("source")
    if not isinstance(raw, dict) or not raw.get("name"):
        raise errors.missing_parameter("source.name")
    name, size = raw["name"], raw.get("size")
    if not isinstance(name, str):
        raise store.invalid_type("name", "string")
    if size is not None and (
        not isinstance(size, int | float) or isinstance(size, bool) or not math.isfinite(size)
    ):
        raise store.invalid_type("size", "number")
    return {"name": name[:255], **({"size": size} if size else {}), "count": count, "userAgent": user_agent}


@api.post(f"{LIST}/entities")
@db.write_request
def create_entities(project_id: int, name: str) -> ResponseReturnValue:
    user, entity_list = _entity_list(project_id, name, *WRITE_ROLES, lock=True)
    body = _json_body()
    names = _names(entity_list)
    if isinstance(body, dict) and "entities" in body:
        items = body["entities"]
        if not isinstance(items, list) or not items:
            raise errors.unexpected_parameters(
                "Expected parameters: (entities: [...]). Got (not an array or an empty array).",
                expected=["entities: [...]"],
            )
        if len(items) > MAX_BULK:
            raise errors.bad_request(f"At most {MAX_BULK} entities in one request.", field="entities")
        unexpected = [k for k in body if k not in ("entities", "source")]
        if unexpected:
            raise errors.unexpected_parameters(
                f"Expected parameters: (entities, source). Got ({', '.join(body)})."
            )
        changes = [store.read_change(item, names, new=True) for item in items]
        source = _bulk_source(body.get("source"), len(changes), request.headers.get("User-Agent"))
        store.create_entities(db.session(), entity_list, changes, _origin(user, source))
        return jsonify({"success": True})
    change = store.read_change(body, names, new=True)
    (entity,) = store.create_entities(db.session(), entity_list, [change], _origin(user))
    return jsonify(entity_json(entity, names, with_data=True))


# ---- one entity ------------------------------------------------------------------------------------------


@api.get(ONE)
def get_entity(project_id: int, name: str, entity_uuid: str) -> ResponseReturnValue:
    _, entity_list = _entity_list(project_id, name)
    entity = store.find_entity(db.session(), entity_list, entity_uuid, deleted=_flag("deleted"))
    return jsonify(entity_json(entity, _names(entity_list), with_data=True))


@api.patch(ONE)
@db.write_request
def update_entity(project_id: int, name: str, entity_uuid: str) -> ResponseReturnValue:
    user, entity_list = _entity_list(project_id, name, *WRITE_ROLES)
    entity = store.find_entity(db.session(), entity_list, entity_uuid, lock=True)
    resolve = _flag("resolve")
    check = store.check_resolvable if resolve else store.check_base_version
    check(entity, request.args.get("baseVersion"), _flag("force"))
    body = _json_body() if request.get_data() else {}
    if resolve and not body:  # only settle the conflict
        entity = store.resolve_conflict(db.session(), entity_list, entity, _origin(user))
    else:
        change = store.read_change(body, _names(entity_list), new=False)
        entity = store.update_entity(db.session(), entity_list, entity, change, _origin(user))
        if resolve:
            entity = store.resolve_conflict(db.session(), entity_list, entity, _origin(user))
    return jsonify(entity_json(entity, _names(entity_list), with_data=True))


@api.delete(ONE)
@db.write_request
def delete_entity(project_id: int, name: str, entity_uuid: str) -> ResponseReturnValue:
    user, entity_list = _entity_list(project_id, name, *WRITE_ROLES)
    entity = store.find_entity(db.session(), entity_list, entity_uuid, lock=True)
    store.delete_entity(db.session(), entity_list, entity, _origin(user))
    return jsonify({"success": True})


@api.post(f"{ONE}/restore")
@db.write_request
def restore_entity(project_id: int, name: str, entity_uuid: str) -> ResponseReturnValue:
    user, entity_list = _entity_list(project_id, name, *WRITE_ROLES)
    entity = store.find_entity(db.session(), entity_list, entity_uuid, lock=True, deleted=True)
    store.restore_entity(db.session(), entity_list, entity, _origin(user))
    return jsonify({"success": True})


def _diff(received: dict[str, Any], other: EntityVersion) -> list[str]:
    """Central's baseDiff/serverDiff: what a change set that differs from another version."""
    before = {**other.data, "label": other.label}
    return [k for k, v in received.items() if k not in before or before[k] != v]


@api.get(f"{ONE}/versions")
def entity_versions(project_id: int, name: str, entity_uuid: str) -> ResponseReturnValue:
    _, entity_list = _entity_list(project_id, name)
    entity = store.find_entity(db.session(), entity_list, entity_uuid)
    names = _names(entity_list)
    resolutions = db.session().scalars(  # the versions current when its conflicts were resolved
        select(AuditEvent.details).where(
            AuditEvent.action == "entity.update.resolve",
            AuditEvent.target_id == entity.uuid,
            AuditEvent.project_id == entity_list.project_id,
        )
    )
    resolved_version = max(
        (d.get("version", 0) for d in resolutions if d.get("dataset") == entity_list.name), default=0
    )
    versions = entity.versions
    by_number = {v.version: v for v in versions}
    out: list[dict[str, Any]] = []
    last_good = 0
    for v in versions:
        row = _version_json(v, v.version == entity.version, names, with_data=True)
        if v.version == entity.version:
            row["data"] = {p: v.data[p] for p in names if p in v.data}
        else:
            row["data"] = v.data
        row.update(conflict=None, resolved=False, baseDiff=[], serverDiff=[], lastGoodVersion=False)
        row["source"] = v.source
        base, previous = by_number.get(v.base_version or 0), by_number.get(v.version - 1)
        if base is not None and previous is not None:
            row["baseDiff"] = _diff(v.data_received, base)
            row["serverDiff"] = _diff(v.data_received, previous)
            if base.version != previous.version:
                # Made against an older version than the one it followed (Central's soft/hard conflict).
                row["conflict"] = "hard" if v.conflicting_properties else "soft"
                row["resolved"] = resolved_version >= v.version
                if not row["resolved"] and last_good == 0 and out:
                    last_good = previous.version
                    out[-1]["lastGoodVersion"] = True
        out.append(row)
    for row in out:
        row["relevantToConflict"] = last_good > 0 and row["version"] >= last_good
    if last_good == 0:
        out[-1]["lastGoodVersion"] = True
    if _flag("relevantToConflict"):
        out = [row for row in out if row["relevantToConflict"]]
    return jsonify(out)


# ---- CSV and OData: rows read in batches and streamed ----------------------------------------------------


def _rows(list_id: int, *, include_deleted: bool = False) -> Iterator[EntityRow]:
    """Every entity of a list as plain rows, newest first, read ``STREAM_BATCH`` at a time."""
    stmt = (
        select(Entity, User.display_name)
        .outerjoin(User, User.id == Entity.created_by_id)
        .where(Entity.entity_list_id == list_id)
        .order_by(Entity.created_at.desc(), Entity.id.desc())
        .execution_options(yield_per=STREAM_BATCH)
    )
    if not include_deleted:
        stmt = stmt.where(Entity.deleted_at.is_(None))
    with db.database().read() as session:
        for entity, creator_name in session.execute(stmt):
            yield EntityRow(
                uuid=entity.uuid,
                label=entity.label,
                data=dict(entity.data),
                version=entity.version,
                conflict=entity.conflict,
                created_at=entity.created_at,
                creator_id=entity.created_by_id,
                creator_name=creator_name,
                updated_at=entity.updated_at,
                deleted_at=entity.deleted_at,
            )


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


@api.get(f"{LIST}/entities.csv")
def entities_csv(project_id: int, name: str) -> ResponseReturnValue:
    _, entity_list = _entity_list(project_id, name)
    names = _names(entity_list)
    list_id = entity_list.id
    header = ["__id", "label", *names, "__createdAt", "__creatorId", "__creatorName", "__updates"]
    header += ["__updatedAt", "__version"]

    def generate() -> Iterator[str]:
        yield _csv_line(header)
        for row in _rows(list_id):
            values = [row.uuid, row.label, *(row.data.get(p, "") for p in names)]
            values += [iso(row.created_at), row.creator_id, row.creator_name, row.version - 1]
            values += [iso(row.updated_at), row.version]
            yield _csv_line(["" if v is None else v for v in values])

    return Response(
        stream_with_context(generate()),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


SVC = f"{LIST}.svc"


@api.get(SVC)
@api.get(f"{SVC}/")
def entities_service_document(project_id: int, name: str) -> ResponseReturnValue:
    _entity_list(project_id, name)
    return _response(
        {
            "@odata.context": f"{_service_root()}/$metadata",
            "value": [{"name": "Entities", "kind": "EntitySet", "url": "Entities"}],
        },
        "application/json; odata.metadata=minimal",
    )


@api.get(f"{SVC}/$metadata")
def entities_metadata(project_id: int, name: str) -> ResponseReturnValue:
    _, entity_list = _entity_list(project_id, name)
    return _response(edmx(entity_list.name, _names(entity_list)), "application/xml; charset=utf-8")


@api.get(f"{SVC}/Entities")
def entities_odata(project_id: int, name: str) -> ResponseReturnValue:
    _, entity_list = _entity_list(project_id, name)
    names = _names(entity_list)
    # Everything that can fail is checked before the first byte is sent.
    selection = Selection(request.args.get("$select"), names)
    row_filter = RowFilter(request.args.get("$filter"), names)
    top, skip, count = _non_negative("$top"), _non_negative("$skip") or 0, _flag("$count")
    context = f"{_service_root()}/$metadata#Entities"
    next_base = _absolute(quote(request.path, safe="/:$"))  # a list named in Cyrillic stays a valid URL
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "$skip"]
    list_id = entity_list.id

    def generate() -> Iterator[str]:
        yield '{"@odata.context":' + json.dumps(context) + ',"value":['
        matched = emitted = 0
        more = False
        for row in _rows(list_id, include_deleted=row_filter.names_deleted):
            if not row_filter.wanted(row):
                continue
            matched += 1
            if matched <= skip:
                continue
            if top is not None and emitted >= top:
                more = True
                if not count:
                    break
                continue
            yield ("," if emitted else "") + json.dumps(selection.shape(row), ensure_ascii=False)
            emitted += 1
        yield "]"
        if count:
            yield f',"@odata.count":{matched}'
        if more:
            link = f"{next_base}?{urlencode([*args, ('$skip', str(skip + emitted))], safe='$/(),:*')}"
            yield ',"@odata.nextLink":' + json.dumps(link)
        yield "}"

    return _response(stream_with_context(generate()))
