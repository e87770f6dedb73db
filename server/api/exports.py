"""Dataset downloads: ODK Central's CSV exports and Sarhad's cleaned exports.

- ``GET /v1/projects/{p}/forms/{f}/submissions.csv.zip`` — Central's exact layout (text as sent):
  ``?attachments=false`` (no ``media/``; the file is then ``{formId}.csv.zip``, else ``{formId}.zip``),
  ``?splitSelectMultiples=true``, ``?groupPaths=false``, ``?deletedFields=true`` (fields of every
  published version). ``GET .../submissions.csv`` is the root table alone.
  Like Central it holds every submission that is not deleted, rejected ones included; unlike Central it
  leaves out test submissions and redacts personal data by role.
- ``GET /v1/projects/{p}/forms/{f}/export.{csv.zip|xlsx|jsonl|geojson}`` — Sarhad's cleaned datasets
  (fields of all versions, ``_issues``, codebook, conflicts): ``?lang=en|tg|ru``, ``?labels=true`` (choice
  labels), ``?labelHeaders=true`` (question labels as column names), ``?since=`` / ``?until=``
  (``YYYY-MM-DD`` or ISO 8601; until's day included), ``?reviewState=approved,hasIssues``,
  ``?includeRejected=true``, ``?includeDeleted=true``, ``?includeTest=true``, ``?attachments=false``,
  ``?splitSelectMultiples=true``, ``?groupPaths=false``.

Encrypted submissions come out "not decrypted" unless the request gives a key's passphrase as Central
does, ``?{keyId}=passphrase`` or the same in a form-encoded POST body (then they are decrypted on the
way out, never stored in plain text; a wrong passphrase is 400.12).

Any role in the project may download; what it sees is decided by ``server.datasets.redact``. Every
download is in the audit log (``form.submission.export``) before its first byte is sent.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response, request
from flask.typing import ResponseReturnValue

from server import auth, db, errors
from server.api import api
from server.datasets import Filters, parse_bound
from server.datasets.export import (
    Format,
    check_export,
    check_language,
    download_name,
    find_format,
    record_export,
    stream_export,
)
from server.datasets.redact import access_for
from server.datasets.tables import ExportOptions
from server.forms.publish import find_form
from server.models import Form
from server.project_keys import unlock_keys
from server.projects import find_project

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _flag(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f"{name} must be true or false, not {raw!r}.", field=name)


def _review_states() -> tuple[str, ...]:
    states: list[str] = []
    for raw in request.args.getlist("reviewState"):
        states += [s.strip() for s in raw.split(",") if s.strip()]
    return tuple(states)


def passphrases_given() -> dict[int, str]:
    """Central's way of giving a key's passphrase: ``?{keyId}=passphrase``, or the same as a
    form-encoded POST body (which keeps it out of addresses and access logs)."""
    found: dict[int, str] = {}
    for source in (request.args, request.form if request.method == "POST" else {}):
        for name, value in source.items():
            if name.isdigit() and value:
                found[int(name)] = value
    return found


def content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def _send(project_id: int, xml_form_id: str, fmt: Format, *, central: bool) -> ResponseReturnValue:
    user = auth.require_project_role(project_id)
    session = db.session()
    project = find_project(session, project_id)
    form = find_form(session, project.id, xml_form_id)
    access = access_for(session, user, project)
    if central:
        if request.args.get("$filter"):
            raise errors.bad_request("$filter is not supported on CSV exports; use export.csv.zip?since=...")
        opts = ExportOptions(
            access=access,
            filters=Filters(include_rejected=True),
            clean=False,
            group_paths=_flag("groupPaths", True),
            split_select_multiples=_flag("splitSelectMultiples", False),
            attachments=_flag("attachments", True) and fmt.name == "csv.zip",
            merged=_flag("deletedFields", False),
        )
    else:
        filters = Filters(
            since=parse_bound(request.args.get("since"), name="since"),
            until=parse_bound(request.args.get("until"), end=True, name="until"),
            review_states=_review_states(),
            include_rejected=_flag("includeRejected", False),
            include_deleted=_flag("includeDeleted", False),
            include_test=_flag("includeTest", False),
        )
        opts = ExportOptions(
            access=access,
            filters=filters,
            clean=True,
            lang=check_language(request.args.get("lang")),
            labels=_flag("labels", False),
            label_headers=_flag("labelHeaders", False),
            group_paths=_flag("groupPaths", True),
            split_select_multiples=_flag("splitSelectMultiples", False),
            attachments=_flag("attachments", True),
            merged=True,
        )
    database = db.database()
    check_export(session, database, form, fmt, opts)
    passphrases = passphrases_given()
    # Unlocked before anything is audited or streamed: a wrong passphrase is a clear 400.12.
    keys = unlock_keys(session, project.id, passphrases) if passphrases else None
    form_id = form.id
    with database.write() as writer:
        fresh = writer.session.get(Form, form_id)
        assert fresh is not None
        record_export(writer.session, fresh, fmt, opts, user, via="api", key_ids=sorted(passphrases))
    name = download_name(form, fmt, media=central and opts.attachments)
    response = Response(stream_export(database, form_id, fmt, opts, keys), mimetype=None)
    response.headers["Content-Type"] = fmt.content_type
    response.headers["Content-Disposition"] = content_disposition(name)
    response.headers["Cache-Control"] = "no-store"
    return response


@api.route("/projects/<int:project_id>/forms/<xml_form_id>/submissions.csv.zip", methods=["GET", "POST"])
def central_csv_zip(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return _send(project_id, xml_form_id, find_format("csv.zip"), central=True)


@api.route("/projects/<int:project_id>/forms/<xml_form_id>/submissions.csv", methods=["GET", "POST"])
def central_csv(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return _send(project_id, xml_form_id, find_format("csv"), central=True)


@api.route(
    "/projects/<int:project_id>/forms/<xml_form_id>/export.<any('csv.zip','xlsx','jsonl','geojson'):fmt>",
    methods=["GET", "POST"],
)
def sarhad_export(project_id: int, xml_form_id: str, fmt: str) -> ResponseReturnValue:
    return _send(project_id, xml_form_id, find_format(fmt), central=False)
