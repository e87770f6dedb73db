"""The /v1 REST API, in ODK Central's shape, one module per noun."""

from flask import Blueprint

api = Blueprint("api", __name__, url_prefix="/v1")

# The route modules attach themselves to ``api`` when imported.
from server.api import (  # noqa: E402, F401
    app_users,
    assignments,
    audits,
    compression,
    conflicts,
    encryption,
    entities,
    entity_exports,
    entity_lists,
    exports,
    forms,
    health,
    odata,
    projects,
    reports,
    sessions,
    submissions,
    sync,
)
