"""ODK Central's roles, mapped onto Sarhad's: what ``/v1/roles`` lists and the assignments routes accept.

Sarhad keeps its own roles (a site administrator; per project an admin, a coordinator or an analyst; app
users narrowed to forms by assignment). Central's tools name roles by number or by system name, so each
Sarhad role is shown as the Central role that matches it, with Central's id where there is one:

=====  =============  ===================  ======================================================
id     system         name                 Sarhad
=====  =============  ===================  ======================================================
1      admin          Administrator        site administrator (server-wide)
2      app-user       App User             app user assigned to a form (pyodk assigns role 2)
3      manager        Project Manager      project ``admin``
4      viewer         Project Viewer       project ``analyst`` (personal data pseudonymised)
8      coordinator    Coordinator          project ``coordinator`` (Sarhad's own; Central has no 8)
=====  =============  ===================  ======================================================

Central's other roles (form viewer, data collector, public link) have no Sarhad counterpart and are not
listed. The roles are fixed: they are not rows in the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server import errors
from server.models import Role

# The day these roles appeared in Sarhad: Central gives each role a creation time.
_SINCE = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)

_SITE = ["project.create", "project.update", "project.delete", "user.create", "user.list", "user.read"]
_READ = ["project.read", "form.list", "form.read", "submission.list", "submission.read"]
_DATASETS_READ = ["dataset.list", "dataset.read"]
_FORMS_WRITE = ["form.create", "form.update", "form.delete", "submission.create", "submission.update"]
_DEVICES = ["field_key.create", "field_key.list", "field_key.delete"]
_ASSIGN = ["assignment.create", "assignment.list", "assignment.delete"]
_DATASETS_WRITE = ["dataset.create", "dataset.update"]


@dataclass(frozen=True)
class CentralRole:
    id: int
    system: str
    name: str
    verbs: tuple[str, ...]
    # Where it is assigned: the whole server, a project or a form.
    scope: str
    # The Sarhad project role it stands for (ProjectRole.role), for project-scoped roles.
    project_role: str | None = None

    def as_json(self) -> dict[str, Any]:
        since = _SINCE.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "id": self.id,
            "name": self.name,
            "system": self.system,
            "verbs": list(self.verbs),
            "createdAt": since,
            "updatedAt": None,
        }


ADMIN = CentralRole(
    1,
    "admin",
    "Administrator",
    (*_SITE, *_READ, *_FORMS_WRITE, *_DEVICES, *_ASSIGN, *_DATASETS_READ, *_DATASETS_WRITE),
    "system",
)
APP_USER = CentralRole(
    2, "app-user", "App User", ("form.read", "open_form.list", "submission.create"), "form"
)
MANAGER = CentralRole(
    3,
    "manager",
    "Project Manager",
    ("project.update", *_READ, *_FORMS_WRITE, *_DEVICES, *_ASSIGN, *_DATASETS_READ, *_DATASETS_WRITE),
    "project",
    Role.ADMIN,
)
VIEWER = CentralRole(4, "viewer", "Project Viewer", (*_READ, *_DATASETS_READ), "project", Role.ANALYST)
COORDINATOR = CentralRole(
    8,
    "coordinator",
    "Coordinator",
    (*_READ, *_FORMS_WRITE, *_DEVICES, *_ASSIGN, *_DATASETS_READ, *_DATASETS_WRITE),
    "project",
    Role.COORDINATOR,
)
ROLES: tuple[CentralRole, ...] = (ADMIN, APP_USER, MANAGER, VIEWER, COORDINATOR)
_BY_PROJECT_ROLE = {r.project_role: r for r in ROLES if r.project_role}


def find_role(ref: str) -> CentralRole:
    """A role by number or by system name (Central reads a reference with a letter in it as a name)."""
    by_name = any(c.isalpha() for c in ref)
    found = next((r for r in ROLES if ref == (r.system if by_name else str(r.id))), None)
    if found is None:
        raise errors.not_found(f"There is no role {ref!r}.")
    return found


def role_for_project_role(project_role: str) -> CentralRole:
    return _BY_PROJECT_ROLE[project_role]
