"""Sign-in as ODK Central does it: ``POST /v1/sessions`` → bearer token; ``GET /v1/users/current``."""

from __future__ import annotations

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import delete

from server import auth, db, errors
from server.api import api
from server.api.schemas import SessionRequest, iso, load_json
from server.models import User, WebSession


@api.post("/sessions")
@db.write_request
def create_session() -> ResponseReturnValue:
    body = load_json(SessionRequest())
    web_session, token = auth.login(db.session(), body["email"], body["password"])
    return jsonify(
        {"token": token, "expiresAt": iso(web_session.expires_at), "createdAt": iso(web_session.created_at)}
    )


@api.delete("/sessions/<token>")
@db.write_request
def delete_session(token: str) -> ResponseReturnValue:
    user = auth.require_user()
    deleted = db.session().execute(
        delete(WebSession).where(
            WebSession.token_sha256 == auth.token_sha256(token), WebSession.user_id == user.id
        )
    )
    if deleted.rowcount == 0:  # type: ignore[attr-defined]
        raise errors.not_found("No such session.")
    return jsonify({"success": True})


def user_json(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "type": "user",
        "displayName": user.display_name,
        "email": user.email,
        "createdAt": iso(user.created_at),
        "updatedAt": None,
        "deletedAt": iso(user.deleted_at),
    }


@api.get("/users/current")
def current_user() -> ResponseReturnValue:
    return jsonify(user_json(auth.require_user()))
