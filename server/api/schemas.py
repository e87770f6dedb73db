"""Marshmallow schemas at the HTTP boundary, and the one way JSON bodies are loaded."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from server import errors


def load_json(schema: Schema) -> dict[str, Any]:
    """The request's JSON body validated by ``schema``; a 400 Problem naming the bad fields otherwise."""
    body = request.get_json(silent=True)
    if body is None:
        raise errors.bad_request("The request body must be JSON.")
    if b"\\u0000" in request.get_data():  # no text of ours holds a NUL; PostgreSQL could not store it
        raise errors.bad_request("The request body contains a NUL character (\\u0000).")
    try:
        return schema.load(body)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise errors.bad_request("The request body is not valid.", fields=exc.messages) from None


def load_query(schema: Schema) -> dict[str, Any]:
    """The request's query string validated by ``schema``; a 400 Problem naming the bad fields otherwise."""
    try:
        return schema.load(request.args)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise errors.bad_request("The query string is not valid.", fields=exc.messages) from None


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as ODK Central writes dates."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SessionRequest(Schema):
    email = fields.Email(required=True)
    password = fields.String(required=True)


class ProjectRequest(Schema):
    name = fields.String(required=True)
    description = fields.String(load_default=None, allow_none=True)


class KeyRequest(Schema):
    """``POST /v1/projects/{p}/key``: managed encryption's passphrase (checked by server.project_keys)."""

    passphrase = fields.String(load_default=None, allow_none=True)
    hint = fields.String(load_default=None, allow_none=True)


class ReportQuery(Schema):
    """``GET .../forms/{f}/report.{csv|xlsx}``: what to count by, and which submissions."""

    class Meta:
        unknown = EXCLUDE  # a client's cache-busting parameter is not an error

    rows = fields.String(required=True)
    cols = fields.String(load_default=None)
    lang = fields.String(load_default=None, validate=validate.OneOf(["en", "tg", "ru"]))
    since = fields.String(load_default=None)
    until = fields.String(load_default=None)
    min_cell = fields.Integer(data_key="minCell", load_default=None, validate=validate.Range(min=1))


class Moment(fields.Field):
    """A date (``2026-12-05``, its midnight UTC) or an ISO 8601 time (without a zone: UTC), as Central
    reads ``?start=`` and ``?end=``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        text = str(value).strip().replace("Z", "+00:00")
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError("Not a date or an ISO 8601 time.") from None
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class AuditQueryArgs(Schema):
    """``GET /v1/audits``: Central's filters and paging, and Sarhad's ``actorId``."""

    class Meta:
        unknown = EXCLUDE

    action = fields.String(load_default=None, validate=validate.Length(min=1, max=60))
    start = Moment(load_default=None)
    end = Moment(load_default=None)
    actor_id = fields.Integer(data_key="actorId", load_default=None)
    limit = fields.Integer(load_default=None, validate=validate.Range(min=0, max=100_000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
