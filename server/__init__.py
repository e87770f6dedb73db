"""Sarhad server: ``create_app()`` builds the Flask application from settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask.sessions import SessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from server import log_redaction
from server.blobs import BlobStore
from server.config import APP_CONFIG_KEY, Settings, load_settings
from server.db import Database
from server.models import MAX_ID


def create_app(settings: Settings | Mapping[str, Any] | None = None) -> Flask:
    """The application factory. ``settings`` may be ready Settings or overrides of the loaded ones."""
    if not isinstance(settings, Settings):
        settings = load_settings(overrides=settings)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_redaction.install()  # no device key or session token in any log line

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        **{APP_CONFIG_KEY: settings},
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = _NoCookieSessions()
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]

    wal_limit = settings.sqlite_wal_limit_mb * 1024 * 1024
    database = Database.create(settings.sqlalchemy_url, BlobStore(settings.blob_dir), wal_limit=wal_limit)
    from server import access, console, db, errors, security_headers, signin_limits, url_ids
    from server.api import api
    from server.openrosa import openrosa

    db.init_app(app, database)
    errors.init_app(app)
    security_headers.init_app(app)
    signin_limits.init_app(app)
    url_ids.init_app(app)  # before the routes are registered: ids with any character, '/' included
    app.url_map.converters["int"] = _DatabaseInt  # before the routes are registered
    app.register_blueprint(api)
    app.register_blueprint(openrosa)
    console.init_app(app)  # the browser console at /
    access.init_app(app)  # last: every route's rule from the one table (server/access.py)
    return app


class _DatabaseInt(IntegerConverter):
    """``<int:...>`` in a route matches only what a database id can be: a larger number in an address is
    a 404 like any unknown id, instead of overflowing the database's integers."""

    def __init__(self, url_map: Map, max: int = MAX_ID) -> None:
        super().__init__(url_map, max=max)


class _NoCookieSessions(SessionInterface):
    """Sarhad keeps no state in cookies (the API signs in with bearer tokens, devices with their key or
    Digest): no cookie session is read or written, which Flask would otherwise do on every request."""

    def open_session(self, app: Flask, request: Any) -> None:
        return None  # Flask then uses its null session

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None
