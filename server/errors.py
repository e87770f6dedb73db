"""Every failure as a Problem with a stable code, rendered in one place.

Codes follow ODK Central's scheme (``<http status>.<n>``) so that clients written for Central can match
them. OpenRosa endpoints get an ``OpenRosaResponse`` XML body (Collect shows its message to the
facilitator); every other endpoint gets JSON ``{"code": ..., "message": ..., "details": ...}``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from server import openrosa_replies

log = logging.getLogger(__name__)


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def bad_request(message: str, **details: Any) -> Problem:
    return Problem(400, "400.1", message, details)


def missing_parameter(name: str) -> Problem:
    return Problem(400, "400.2", f"Required parameter {name!r} is missing.", {"field": name})


def invalid_form(message: str, **details: Any) -> Problem:
    return Problem(400, "400.8", message, details)


def unauthenticated(
    message: str = "Could not authenticate with the provided credentials.",
) -> Problem:
    return Problem(401, "401.2", message)


def forbidden(message: str = "You are not allowed to do this.") -> Problem:
    return Problem(403, "403.1", message)


def not_found(message: str = "Could not find the resource you were looking for.") -> Problem:
    return Problem(404, "404.1", message)


def conflict(message: str, code: str = "409.3", **details: Any) -> Problem:
    return Problem(409, code, message, details)


def attachment_differs(name: str, instance_id: str, **details: Any) -> Problem:
    """Other bytes for a submission file already held: both kept, the new one in the conflict store."""
    return Problem(
        409,
        "409.3",
        f"Submission {instance_id!r} already has a different file named {name!r}. It was not replaced: "
        "the file you sent has been kept beside it for the coordinator to review.",
        {"reason": "attachment_differs", "name": name, "instanceId": instance_id, **details},
    )


def too_large(limit: int) -> Problem:
    return Problem(
        413,
        "413.1",
        f"The request is larger than this server accepts ({limit} bytes).",
        {"limit": limit},
    )


def unprocessable(message: str, **details: Any) -> Problem:
    return Problem(422, "422.1", message, details)


def _http_problem(exc: HTTPException) -> Problem:
    status = exc.code or 500
    if status == 404:
        return not_found()
    if status == 413:
        from flask import current_app

        return too_large(current_app.config["MAX_CONTENT_LENGTH"])
    if status == 405:
        return Problem(405, "405.1", f"The method {request.method} is not allowed here.")
    return Problem(status, f"{status}.1", exc.description or exc.name)


def render(problem: Problem) -> Response:
    if request.blueprint == "openrosa":  # Collect shows the message of an OpenRosaResponse
        response = openrosa_replies.message(problem.message, status=problem.status, nature="error")
    else:
        body: dict[str, Any] = {"code": problem.code, "message": problem.message}
        if problem.details:
            body["details"] = problem.details
        response = jsonify(body)
        response.status_code = problem.status
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    @app.before_request
    def _refuse_nul() -> None:
        # No name, ID or filter of ours holds a NUL, and PostgreSQL text cannot store one: refused at the
        # door rather than failing in the database.
        if "\x00" in request.path or b"%00" in request.query_string:
            raise bad_request("The address contains a NUL character (%00).")

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError) -> Response:
        # A value the database cannot hold (a NUL in a JSON string, a number out of range): the client's
        # input, and the transaction was rolled back.
        log.warning("refused a value on %s %s: %s", request.method, request.path, exc.orig)
        return render(bad_request("A value in this request cannot be stored; nothing was changed."))

    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        return render(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return render(_http_problem(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return render(Problem(500, "500.1", "The server failed to handle this request; nothing was changed."))
