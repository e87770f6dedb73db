"""The browser console: server-rendered pages at ``/`` for coordinators, analysts and administrators.

It is a second, thin face over the same code as the /v1 API: it signs in through ``server.auth.login``,
checks roles with ``server.auth.require_project_role`` and the API's own role tuples, publishes through
``server.forms.publish``, creates devices through ``server.devices`` and shows submissions through the
redaction of ``server.datasets.redact``. Pages work without JavaScript; every asset is served from
``static/`` (no CDN: a hub has no internet).

The console alone uses a cookie (``sarhad_session``, a revocable server-side session); the API and
OpenRosa stay cookie-free (``server._NoCookieSessions``).
"""

from __future__ import annotations

from flask import Blueprint, Flask

console = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

# The page modules attach their routes to ``console`` when imported.
from server.console import (  # noqa: E402, F401
    audit_log,
    conflicts,
    dashboard,
    devices,
    downloads,
    entity_lists,
    fill,
    forms,
    home,
    hubs,
    i18n,
    jobs,
    pages,
    submission_files,
    submissions,
    users,
)


def init_app(app: Flask) -> None:
    """Register the console at ``/`` with its translations."""
    i18n.init_app(app)
    app.register_blueprint(console)
