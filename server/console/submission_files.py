"""A submission's files in the console: the list shown on its page, each photo as a small thumbnail
linking to the file itself.

The rules are the API's (``GET .../submissions/{id}/attachments/{name}``): any role in the project,
but a file that only personal questions name is neither listed nor served to a role that sees
pseudonyms (:func:`server.datasets.redacted_xml.shown_attachment_names`). An encrypted submission's
files are envelopes the server cannot open: they are listed, never previewed.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from flask import send_file
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from server import config, db, errors, thumbnails
from server.api.exports import content_disposition
from server.api.submissions import FormAccess, find_submission, form_access
from server.console import console
from server.console.session import require_signed_in
from server.datasets.redacted_xml import shown_attachment_names
from server.models import SubmissionAttachment, SubmissionVersion

FILES = "/projects/<int:project_id>/forms/<xml_form_id>/submissions/<instance_id>"


@dataclass(frozen=True)
class ShownFile:
    name: str
    present: bool  # received (a file can be named by the answers and not arrived yet)
    thumbnail: bool  # a photo that gets a preview


def shown_files(fa: FormAccess, version: SubmissionVersion) -> list[ShownFile]:
    """The current version's files this requester may see, in the order they were named."""
    shown = shown_attachment_names(version.xml, fa.schema(db.session()), fa.access)
    return [
        ShownFile(
            a.name,
            a.blob_sha256 is not None,
            a.blob_sha256 is not None and not version.encrypted and thumbnails.is_image(a.name),
        )
        for a in version.attachments
        if shown is None or a.name in shown
    ]


def _file(project_id: int, xml_form_id: str, instance_id: str, name: str) -> tuple[SubmissionVersion, str]:
    """The version and the sha256 of a file this requester may have, else 404 or 403 as the API."""
    require_signed_in()
    fa = form_access(project_id, xml_form_id)
    sub = find_submission(db.session(), fa.form, instance_id)
    version = sub.current_version
    assert version is not None
    row: SubmissionAttachment | None = next((a for a in version.attachments if a.name == name), None)
    if row is None or row.blob_sha256 is None:
        raise errors.not_found(_("There is no such file."))
    if not any(f.name == name for f in shown_files(fa, version)):
        raise errors.forbidden(_("This file belongs to a personal question; your role may not open it."))
    return version, row.blob_sha256


@console.get(f"{FILES}/files/<name>")
def submission_file(project_id: int, xml_form_id: str, instance_id: str, name: str) -> ResponseReturnValue:
    _version, sha = _file(project_id, xml_form_id, instance_id, name)
    path = db.database().blobs.path(sha)
    if not path.exists():
        raise errors.stored_file_missing(name)
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = send_file(path, mimetype=mimetype, etag=sha, conditional=True)
    disposition = content_disposition(name)
    if thumbnails.is_image(name):  # a photo opens in the browser's tab; anything else is saved
        disposition = disposition.replace("attachment", "inline", 1)
    response.headers["Content-Disposition"] = disposition
    # Bytes a device sent, served from this origin: nothing in them may run or load anything.
    response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response


@console.get(f"{FILES}/thumbnails/<name>")
def submission_thumbnail(
    project_id: int, xml_form_id: str, instance_id: str, name: str
) -> ResponseReturnValue:
    version, sha = _file(project_id, xml_form_id, instance_id, name)
    if version.encrypted or not thumbnails.is_image(name):
        raise errors.not_found(_("This file has no preview."))
    source = db.database().blobs.path(sha)
    if not source.exists():
        raise errors.stored_file_missing(name)
    made = thumbnails.thumbnail(config.settings().data_dir, sha, source)
    if made is None:
        raise errors.not_found(_("This file has no preview."))
    # A photo is personal data: like every answer outside OpenRosa it is sent ``no-store``
    # (server.security_headers); the cache that saves the work is the server's own.
    return send_file(made, mimetype=thumbnails.MIMETYPE, etag=sha, conditional=True)
