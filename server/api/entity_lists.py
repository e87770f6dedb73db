"""``/v1/projects/{p}/datasets``: entity lists and their properties in Central's JSON shape (pyodk's
``entity_lists``). Any role in the project may read them; admins and coordinators create them, as forms."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, fields

from server import audit, auth, db
from server.api import api
from server.api.schemas import iso, load_json
from server.datasets.odata_schema import odata_name
from server.entities.entities import summarize
from server.entities.from_submissions import convert_pending
from server.entities.lists import add_property, create_entity_list, find_entity_list, list_entity_lists
from server.models import EntityList
from server.projects import find_project

WRITE_ROLES = ("admin", "coordinator")


class EntityListRequest(Schema):
    name = fields.String(required=True)
    approvalRequired = fields.Boolean(load_default=False)


class EntityListUpdate(Schema):
    approvalRequired = fields.Boolean()
    ownerOnly = fields.Boolean()


class PropertyRequest(Schema):
    name = fields.String(required=True)


def entity_list_json(entity_list: EntityList) -> dict[str, Any]:
    return {
        "name": entity_list.name,
        "createdAt": iso(entity_list.created_at),
        "projectId": entity_list.project_id,
        "approvalRequired": entity_list.approval_required,
        "ownerOnly": entity_list.owner_only,
    }


def _extended(entity_list: EntityList) -> dict[str, Any]:
    summary = summarize(db.session(), entity_list)
    return {
        **entity_list_json(entity_list),
        "entities": summary.entities,
        "lastEntity": iso(summary.last_entity),
        "conflicts": summary.conflicts,
    }


def entity_list_metadata(entity_list: EntityList) -> dict[str, Any]:
    """One list as Central's ``GET .../datasets/{name}`` gives it: with its properties and forms."""
    changes = [entity_list.created_at, *(p.published_at for p in entity_list.properties)]
    return {
        **entity_list_json(entity_list),
        "lastUpdate": iso(max(changes)),
        "linkedForms": [],
        "sourceForms": [],
        "draftLinkedForms": [],
        "draftSourceForms": [],
        "properties": [
            {"name": p.name, "publishedAt": iso(p.published_at), "odataName": odata_name(p.name), "forms": []}
            for p in entity_list.properties
        ],
    }


def _extended_metadata_asked() -> bool:
    return request.headers.get("X-Extended-Metadata", "").strip().lower() == "true"


@api.get("/projects/<int:project_id>/datasets")
def list_datasets(project_id: int) -> ResponseReturnValue:
    auth.require_project_role(project_id)
    project = find_project(db.session(), project_id)
    shape = _extended if _extended_metadata_asked() else entity_list_json
    return jsonify([shape(e) for e in list_entity_lists(db.session(), project)])


@api.post("/projects/<int:project_id>/datasets")
@db.write_request
def create_dataset(project_id: int) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    body = load_json(EntityListRequest())
    project = find_project(db.session(), project_id)
    entity_list = create_entity_list(db.session(), project, body["name"], body["approvalRequired"], user)
    return jsonify(entity_list_metadata(entity_list))


@api.get("/projects/<int:project_id>/datasets/<name>")
def get_dataset(project_id: int, name: str) -> ResponseReturnValue:
    auth.require_project_role(project_id)
    find_project(db.session(), project_id)
    return jsonify(entity_list_metadata(find_entity_list(db.session(), project_id, name)))


@api.patch("/projects/<int:project_id>/datasets/<name>")
@db.write_request
def update_dataset(project_id: int, name: str) -> ResponseReturnValue:
    """Central's dataset PATCH: ``approvalRequired`` and ``ownerOnly``. Turning approval off with
    ``?convert=true`` creates the entities of received submissions that were waiting for approval."""
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    body = load_json(EntityListUpdate())
    find_project(db.session(), project_id)
    entity_list = find_entity_list(db.session(), project_id, name, lock=True)
    before = entity_list.approval_required
    if "approvalRequired" in body:
        entity_list.approval_required = body["approvalRequired"]
    if "ownerOnly" in body:
        entity_list.owner_only = body["ownerOnly"]
    audit.record(
        db.session(),
        "dataset.update",
        actor=user,
        project_id=project_id,
        target_type="dataset",
        target_id=name,
        **body,
    )
    if before and not entity_list.approval_required and request.args.get("convert") == "true":
        convert_pending(db.session(), entity_list, user)
    db.session().flush()
    return jsonify(entity_list_metadata(entity_list))


@api.post("/projects/<int:project_id>/datasets/<name>/properties")
@db.write_request
def create_dataset_property(project_id: int, name: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id, *WRITE_ROLES)
    body = load_json(PropertyRequest())
    find_project(db.session(), project_id)
    entity_list = find_entity_list(db.session(), project_id, name, lock=True)
    add_property(db.session(), entity_list, body["name"], user)
    return jsonify({"success": True})
