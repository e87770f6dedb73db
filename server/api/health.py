"""``GET /v1/health``: the server is up and its database answers (load balancers, sync clients)."""

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from server import db
from server.api import api


@api.get("/health")
def health() -> ResponseReturnValue:
    db.session().execute(text("SELECT 1"))
    return jsonify({"status": "ok"})
