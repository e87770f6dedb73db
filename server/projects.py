"""Projects: create and find them by id or name."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, errors
from server.models import Project, ProjectRole, User


def create_project(
    session: Session, name: str, description: str | None = None, actor: User | None = None
) -> Project:
    name = name.strip()
    if not name:
        raise errors.bad_request("A project needs a name.")
    if session.scalar(select(Project).where(Project.name == name)) is not None:
        raise errors.conflict(f"A project named {name!r} already exists.")
    project = Project(name=name, description=description)
    session.add(project)
    session.flush()
    audit.record(
        session,
        "project.create",
        actor=actor,
        project_id=project.id,
        target_type="project",
        target_id=project.id,
        name=name,
    )
    return project


def find_project(session: Session, ref: str | int) -> Project:
    """A project by numeric id or by exact name (what people type on the command line)."""
    project = None
    if isinstance(ref, int) or str(ref).isdigit():
        project = session.get(Project, int(ref))
    if project is None:
        project = session.scalar(select(Project).where(Project.name == str(ref)))
    if project is None or project.archived:
        raise errors.not_found(f"There is no project {ref!r}.")
    return project


def visible_projects(session: Session, user: User) -> list[Project]:
    """The projects a web user may open: all of them for a site administrator, else those where the user
    holds a role. Archived projects are left out."""
    query = select(Project).where(Project.archived.is_(False)).order_by(Project.id)
    if not user.is_site_admin:
        query = query.join(ProjectRole, ProjectRole.project_id == Project.id).where(
            ProjectRole.user_id == user.id
        )
    return list(session.scalars(query))
