"""The /v1 REST API, in ODK Central's shape, one module per noun."""

from flask import Blueprint

api = Blueprint("api", __name__, url_prefix="/v1")

# The route modules attach themselves to ``api`` when imported.
from server.api import app_users, exports, forms, health, projects, sessions, sync  # noqa: E402, F401
