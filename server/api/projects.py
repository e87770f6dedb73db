"""``/v1/projects``: list, read and create projects (Central's JSON shape)."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue

from server import auth, db
from server.api import api
from server.api.schemas import ProjectRequest, iso, load_json
from server.models import Project
from server.projects import create_project, find_project, visible_projects


def project_json(project: Project) -> dict[str, object]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "archived": project.archived,
        "keyId": project.key_id,
        "createdAt": iso(project.created_at),
        "updatedAt": None,
        "deletedAt": None,
    }


@api.get("/projects")
def list_projects() -> ResponseReturnValue:
    user = auth.require_user()
    return jsonify([project_json(p) for p in visible_projects(db.session(), user)])


@api.get("/projects/<int:project_id>")
def get_project(project_id: int) -> ResponseReturnValue:
    auth.require_project_role(project_id)
    return jsonify(project_json(find_project(db.session(), project_id)))


@api.post("/projects")
@db.write_request
def post_project() -> ResponseReturnValue:
    user = auth.require_site_admin()
    body = load_json(ProjectRequest())
    project = create_project(db.session(), body["name"], body["description"], actor=user)
    return jsonify(project_json(project))
