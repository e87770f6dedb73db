"""Every failure as a Problem with a stable code, rendered in one place.

Codes follow ODK Central's scheme (``<http status>.<n>``) so that clients written for Central can match
them. OpenRosa endpoints get an ``OpenRosaResponse`` XML body (Collect shows its message to the
facilitator); every other endpoint gets JSON ``{"code": ..., "message": ..., "details": ...}``.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from server import openrosa_replies
from server.log_redaction import redact

log = logging.getLogger(__name__)


class Code(enum.StrEnum):
    """Every problem code this server answers with, each meaning one kind of failure. A failure gets its
    code here and nowhere else (``tests/test_errors.py`` fails on a code written anywhere else)."""

    BAD_REQUEST = "400.1"  # the request cannot be understood (a bad value, body or option)
    MISSING_PARAMETER = "400.2"  # a required parameter is missing
    INVALID_FORM = "400.8"  # an XLSForm or XForm that does not convert or parse
    FILTER_UNREADABLE = "400.18"  # an OData $filter that cannot be read
    UNKNOWN_PROPERTY = "400.19"  # an OData $filter or $select naming no property
    BAD_SKIPTOKEN = "400.20"  # an OData $skiptoken this server did not give out
    INVALID_TYPE = "400.11"  # a JSON value of the wrong type
    UNDECRYPTABLE = "400.12"  # a wrong passphrase, or encrypted data that does not open with the key
    PASSPHRASE_TOO_SHORT = "400.21"  # a passphrase shorter than the rule (Central: 10 characters)
    UNKNOWN_SELECT = "400.23"  # an OData $select naming no property of an entity list
    INVALID_ENTITY = "400.28"  # an entity whose data names no property of its list
    INVALID_ENTITY_FORM = "400.25"  # an entity declaration that cannot be published (personal data)
    ENTITY_ACTION_NOT_PERMITTED = "403.2"  # a submission asking an entity action its form does not declare
    ENTITY_LIST_NOT_FOUND = "404.7"  # a submission naming an entity list the project does not have
    ENTITY_NOT_FOUND = "404.8"  # a submission updating an entity the list does not have
    ENTITY_BASE_VERSION_NOT_FOUND = "404.9"  # a submission's entity update based on a version never made
    ENTITY_DELETED = "404.11"  # a submission updating an entity that was deleted
    UNEXPECTED_PARAMETERS = "400.31"  # a JSON body with keys this request does not take
    NO_CONFLICT = "400.32"  # resolving an entity conflict that is not there
    FORM_EXPIRED = "400.30"  # a console form whose CSRF token is not this browser's (forged or stale)
    UNAUTHENTICATED = "401.2"  # no credentials, or credentials that do not sign in
    FORBIDDEN = "403.1"  # signed in, but this role may not do this
    NOT_FOUND = "404.1"  # no such resource (or not one this requester may know of)
    METHOD_NOT_ALLOWED = "405.1"  # the address exists, the method does not
    NOT_ACCEPTABLE = "406.1"  # no answer in a form the client accepts
    FORM_CLOSED = "409.2"  # the form is closed and takes no submissions
    CONFLICT = "409.3"  # already exists, or a payload kept for review instead of applied
    ALREADY_ACTIVE = "409.4"  # a feature that is on already (managed encryption) and cannot be redone
    PUBLISHED_VERSION_DIFFERS = "409.6"  # a published form version (or its media) never changes
    ENTITY_VERSION_CONFLICT = "409.15"  # an entity update based on a version that is not the current one
    UPLOAD_OFFSET = "409.20"  # a sync upload chunk that does not start where central stands
    LENGTH_REQUIRED = "411.1"  # a body without Content-Length where one is needed
    PRECONDITION_FAILED = "412.1"  # an If-Match / If-Unmodified-Since that does not hold
    TOO_LARGE = "413.1"  # a body or document over the configured limit
    UNSUPPORTED_MEDIA_TYPE = "415.1"  # a body of a type this address does not take
    RANGE_NOT_SATISFIABLE = "416.1"  # a Range outside the file
    UNPROCESSABLE = "422.1"  # well-formed, but the values cannot be used
    BUNDLE_REFUSED = "422.20"  # a sync bundle tampered with, damaged, or made for/by another server
    TOO_MANY_FAILURES = "429.1"  # too many failed sign-ins or wrong tokens: wait (Retry-After)
    UNEXPECTED = "500.1"  # a failure of the server itself; nothing was changed
    STORED_FILE_MISSING = "500.2"  # a row whose stored file is gone: `sarhad doctor`
    NOT_IMPLEMENTED = "501.4"  # an OData feature this server does not offer


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: Code | str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = str(code)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def bad_request(message: str, **details: Any) -> Problem:
    return Problem(400, Code.BAD_REQUEST, message, details)


def missing_parameter(name: str) -> Problem:
    return Problem(400, Code.MISSING_PARAMETER, f"Required parameter {name!r} is missing.", {"field": name})


def invalid_form(message: str, **details: Any) -> Problem:
    return Problem(400, Code.INVALID_FORM, message, details)


def bad_query_option(option: str, message: str) -> Problem:
    """An OData or export query option with a value that cannot be used."""
    return Problem(400, Code.BAD_REQUEST, f"{option}: {message}", {"option": option})


def filter_unreadable(reason: str, at: int | None = None) -> Problem:
    details: dict[str, Any] = {"reason": reason}
    if at is not None:
        details["at"] = at
    return Problem(
        400, Code.FILTER_UNREADABLE, f"The $filter expression could not be read: {reason}", details
    )


def unknown_property(name: str) -> Problem:
    return Problem(
        400,
        Code.UNKNOWN_PROPERTY,
        f"There is no property {name!r} to filter or select on.",
        {"property": name},
    )


def bad_skiptoken() -> Problem:
    return Problem(
        400, Code.BAD_SKIPTOKEN, "The $skiptoken is not one this server gave out.", {"option": "$skiptoken"}
    )


def unsupported_function(name: str, at: int) -> Problem:
    return Problem(
        501, Code.NOT_IMPLEMENTED, f"The function {name}() is not supported in $filter.", {"at": at}
    )


def invalid_type(field_name: str, expected: str) -> Problem:
    return Problem(
        400,
        Code.INVALID_TYPE,
        f"Invalid input data type: expected ({field_name}) to be ({expected}).",
        {"field": field_name, "expected": expected},
    )


def unexpected_value(message: str, **details: Any) -> Problem:
    """Central's 400.8: a value that cannot be used where it stands (a blank entity label)."""
    return Problem(400, Code.INVALID_FORM, message, details)


def unexpected_parameters(message: str, **details: Any) -> Problem:
    return Problem(400, Code.UNEXPECTED_PARAMETERS, message, details)


def invalid_entity(reason: str) -> Problem:
    return Problem(400, Code.INVALID_ENTITY, f"The entity is invalid. {reason}", {"reason": reason})


def invalid_entity_form(reason: str) -> Problem:
    """Central's 400.25: a form whose entity declaration cannot be published as it stands."""
    return Problem(
        400,
        Code.INVALID_ENTITY_FORM,
        f"The entity definition within the form is invalid. {reason}",
        {"reason": reason},
    )


def entity_action_not_permitted(action: str, permitted: list[str]) -> Problem:
    return Problem(
        403,
        Code.ENTITY_ACTION_NOT_PERMITTED,
        f"The submission asks to {action} an entity, which its form does not declare "
        f"(it declares: {', '.join(permitted) or 'nothing'}).",
        {"action": action, "permitted": permitted},
    )


def entity_list_not_found(name: str) -> Problem:
    return Problem(
        404,
        Code.ENTITY_LIST_NOT_FOUND,
        f"The entity list ({name}) specified in the submission does not exist.",
        {"datasetName": name},
    )


def entity_not_found(uuid: str, list_name: str) -> Problem:
    return Problem(
        404,
        Code.ENTITY_NOT_FOUND,
        f"The entity with UUID ({uuid}) specified in the submission does not exist in the entity list "
        f"({list_name}).",
        {"entityUuid": uuid, "datasetName": list_name},
    )


def entity_base_version_not_found(base: str, uuid: str, list_name: str) -> Problem:
    return Problem(
        404,
        Code.ENTITY_BASE_VERSION_NOT_FOUND,
        f"Base version ({base}) does not exist for entity UUID ({uuid}) in entity list ({list_name}).",
        {"baseVersion": base, "entityUuid": uuid, "datasetName": list_name},
    )


def entity_deleted(uuid: str) -> Problem:
    return Problem(
        404, Code.ENTITY_DELETED, f"The entity with UUID ({uuid}) has been deleted.", {"entityUuid": uuid}
    )


def no_conflict() -> Problem:
    return Problem(400, Code.NO_CONFLICT, "The Entity doesn't have any conflict")


def property_not_found(name: str) -> Problem:
    return Problem(400, Code.UNKNOWN_SELECT, f"Could not find a property named '{name}'", {"property": name})


def entity_version_conflict(current: int, provided: str | None) -> Problem:
    return Problem(
        409,
        Code.ENTITY_VERSION_CONFLICT,
        f"Current version of the Entity is '{current}' and you provided '{provided}'. Please correct the "
        "version number or pass '?force=true' in the URL to forcefully update the Entity.",
        {"current": str(current), "provided": provided},
    )


def form_expired(message: str) -> Problem:
    """A console POST without this browser's CSRF token; ``message`` comes translated from the console."""
    return Problem(400, Code.FORM_EXPIRED, message)


def unauthenticated(
    message: str = "Could not authenticate with the provided credentials.",
    headers: dict[str, str] | None = None,
) -> Problem:
    return Problem(401, Code.UNAUTHENTICATED, message, headers=headers)


def forbidden(message: str = "You are not allowed to do this.") -> Problem:
    return Problem(403, Code.FORBIDDEN, message)


def not_found(message: str = "Could not find the resource you were looking for.") -> Problem:
    return Problem(404, Code.NOT_FOUND, message)


def conflict(message: str, **details: Any) -> Problem:
    """Already exists, or a payload kept for review instead of applied (Central's 409.3)."""
    return Problem(409, Code.CONFLICT, message, details)


def undecryptable(message: str = "", **details: Any) -> Problem:
    """Central's 400.12: a wrong passphrase (or data that does not open with the key)."""
    text = "Could not perform decryption. Double check your passphrase and your data and try again."
    return Problem(400, Code.UNDECRYPTABLE, f"{text} {message}".strip(), details)


def passphrase_too_short(minimum: int) -> Problem:
    return Problem(
        400,
        Code.PASSPHRASE_TOO_SHORT,
        f"The passphrase must be at least {minimum} characters long.",
        {"minimum": minimum},
    )


def already_active(feature: str) -> Problem:
    return Problem(
        409,
        Code.ALREADY_ACTIVE,
        f"Could not activate feature ({feature}) as it was already activated. It cannot be turned off.",
        {"feature": feature},
    )


def form_closed(form_id: str) -> Problem:
    return Problem(
        409, Code.FORM_CLOSED, f"The form {form_id!r} is closed and no longer accepts submissions.", {}
    )


def published_version_differs(message: str, **details: Any) -> Problem:
    return Problem(409, Code.PUBLISHED_VERSION_DIFFERS, message, details)


def upload_offset(message: str, offset: int) -> Problem:
    return Problem(409, Code.UPLOAD_OFFSET, message, {"offset": offset})


def attachment_differs(name: str, instance_id: str, **details: Any) -> Problem:
    """Other bytes for a submission file already held: both kept, the new one in the conflict store."""
    return Problem(
        409,
        Code.CONFLICT,
        f"Submission {instance_id!r} already has a different file named {name!r}. It was not replaced: "
        "the file you sent has been kept beside it for the coordinator to review.",
        {"reason": "attachment_differs", "name": name, "instanceId": instance_id, **details},
    )


def too_large(limit: int) -> Problem:
    return Problem(
        413,
        Code.TOO_LARGE,
        f"The request is larger than this server accepts ({limit} bytes).",
        {"limit": limit},
    )


def unprocessable(message: str, **details: Any) -> Problem:
    return Problem(422, Code.UNPROCESSABLE, message, details)


def bundle_refused(reason: str) -> Problem:
    """A USB bundle central will not take (tampered with, damaged, foreign, or from an unknown hub)."""
    return Problem(422, Code.BUNDLE_REFUSED, f"The bundle was refused: {reason}.")


def too_many_failures(message: str, retry_after: int) -> Problem:
    """Sign-in or token attempts refused for a while after too many failures (see server.signin_limits)."""
    return Problem(
        429, Code.TOO_MANY_FAILURES, message, {"retryAfter": retry_after}, {"Retry-After": str(retry_after)}
    )


def stored_file_missing(name: str) -> Problem:
    return Problem(
        500,
        Code.STORED_FILE_MISSING,
        f"The stored file of {name} is missing; an administrator should run `sarhad doctor`.",
    )


def unexpected() -> Problem:
    return Problem(500, Code.UNEXPECTED, "The server failed to handle this request; nothing was changed.")


def http_problem(exc: HTTPException) -> Problem:
    status = exc.code or 500
    if status == 404:
        return not_found()
    if status == 413:
        from server.config import settings

        return too_large(settings().max_request_bytes)
    if status == 405:
        return Problem(405, Code.METHOD_NOT_ALLOWED, f"The method {request.method} is not allowed here.")
    # Other statuses werkzeug raises (406, 411, 412, 415, 416...) have their code in Code; a status
    # without one is still told with Central's pattern rather than turned into another status.
    code = next((c for c in Code if c.value == f"{status}.1"), None)
    return Problem(status, code or f"{status}.1", exc.description or exc.name)


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
        log.warning("refused a value on %s %s: %s", request.method, redact(request.path), exc.orig)
        return render(bad_request("A value in this request cannot be stored; nothing was changed."))

    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        return render(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return render(http_problem(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, redact(request.path))
        return render(unexpected())
