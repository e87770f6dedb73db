"""OpenRosa for unmodified ODK Collect, in ODK Central's URL shape. Thin: decisions live in server/ingest.

Two ways in, the same behaviour (Collect appends ``/formList`` and ``/submission`` to its server URL):

- **token in the URL** (server URL ``.../v1/key/<token>/projects/<p>``, no credentials on the device)::

      GET  /v1/key/<token>/projects/<p>/formList
      GET  /v1/key/<token>/projects/<p>/forms/<formId>.xml
      GET  /v1/key/<token>/projects/<p>/forms/<formId>/manifest
      GET  /v1/key/<token>/projects/<p>/forms/<formId>/attachments/<name>
      HEAD /v1/key/<token>/projects/<p>/submission      (204 + X-OpenRosa-Accept-Content-Length)
      POST /v1/key/<token>/projects/<p>/submission

- **Digest** (server URL ``.../v1/projects/<p>``, username and password on the device, for a hub on a LAN
  without HTTPS): ``/v1/projects/<p>/formList`` and ``/v1/projects/<p>/submission`` (HEAD, POST). Forms,
  manifests and media are downloaded from ``/v1/projects/<p>/device/forms/...``, the URLs the form list
  hands out, because ``/v1/projects/<p>/forms/<formId>.xml`` is the web API for signed-in users.

A submission's multipart body is read (files spooled to DATA_DIR/spool, never whole in memory), its
device, form version and permission are checked, and its files staged in the blob store, all *before* any
write transaction opens, so that a slow upload never holds SQLite's write lock. The write itself goes
through the group committer (server/ingest/group_commit.py): concurrent submissions share one commit.
The 201 is sent only after the rows are committed and the files published.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote

from flask import Response, current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.datastructures import FileStorage, MultiDict

from server import config, db, errors, openrosa_replies
from server.blobs import StagedBlob
from server.db import Writer
from server.entities.attachment import list_file
from server.ingest import FormTarget, IngestResult, find_target, ingest
from server.ingest.group_commit import committer_for
from server.ingest.parse import ParsedSubmission, check_attachment_name, parse_submission
from server.models import AppUser, Blob, Form, FormMedia, FormState, FormVersion, Source
from server.openrosa import openrosa
from server.openrosa.multipart_body import read_multipart

log = logging.getLogger(__name__)

XML_PART = "xml_submission_file"
INCOMPLETE_PART = "*isIncomplete*"
# Parts up to this size stay in memory; larger ones are spooled to disk as they arrive.
SPOOL_IN_MEMORY = 512 * 1024
# Collect sends at most 100 files per request, plus the XML and *isIncomplete*.
MAX_PARTS = 1000
DEVICE_ID_MAX = 255

KEY = "/key/<token>/projects/<int:project_id>"
DIGEST = "/projects/<int:project_id>"
DIGEST_FORMS = "/projects/<int:project_id>/device/forms"


def _settings() -> config.Settings:
    return config.settings()


# ---- who is asking -------------------------------------------------------------------------------------


def _device(project_id: int, token: str | None) -> AppUser:
    """The app user of this request: by the token in the URL, or by Digest when there is none.

    Raises 401 (with the Digest challenge) or 403 as a Problem, rendered as OpenRosa XML.
    """
    from server import devices

    return devices.authenticate_device(project_id, token)


def _visible_forms(app_user: AppUser) -> list[Form]:
    from server import devices

    return list(devices.visible_forms(db.session(), app_user))


def _may_submit(app_user: AppUser, target: FormTarget, project_id: int) -> bool:
    from server import devices

    return devices.may_submit(db.session(), app_user, target, project_id)


def _listed_form(app_user: AppUser, xml_form_id: str) -> tuple[Form, FormVersion]:
    """A form this device may download: visible to it, open, with a published version."""
    for form in _visible_forms(app_user):
        if form.xml_form_id == xml_form_id and form.current_version is not None:
            return form, form.current_version
    raise errors.not_found(f"There is no form {xml_form_id!r} for this device.")


def _listable(form: Form) -> bool:
    # Closing forms still take submissions but are no longer handed out (as in ODK Central).
    return form.state == FormState.OPEN and form.deleted_at is None and form.current_version is not None


# ---- URLs handed to Collect ----------------------------------------------------------------------------


def _absolute(path: str) -> str:
    base = (_settings().base_url or request.host_url).rstrip("/")
    return base + path


def _links(token: str | None, project_id: int, xml_form_id: str) -> dict[str, str]:
    """Download, manifest and media-prefix URLs for one form, in the way this device signs in."""
    form = quote(xml_form_id, safe="")
    if token is not None:
        base = f"/v1/key/{quote(token, safe='')}/projects/{project_id}/forms/{form}"
        return {"xml": f"{base}.xml", "manifest": f"{base}/manifest", "media": f"{base}/attachments/"}
    base = f"/v1/projects/{project_id}/device/forms/{form}"
    return {"xml": f"{base}.xml", "manifest": f"{base}/manifest", "media": f"{base}/attachments/"}


@dataclass(frozen=True)
class Served:
    """A media file a device can download: an uploaded blob, or an entity list made into its CSV now."""

    media: FormMedia
    md5: str
    size: int
    blob: Blob | None = None
    data: bytes | None = None


def _served_media(version: FormVersion) -> list[Served]:
    """The media of a version that can be downloaded (uploaded, or an entity list); a missing one would
    spoil the manifest."""
    session = db.session()
    rows = session.execute(
        select(FormMedia, Blob)
        .outerjoin(Blob, Blob.sha256 == FormMedia.blob_sha256)
        .where(
            FormMedia.form_version_id == version.id,
            (FormMedia.blob_sha256.is_not(None)) | (FormMedia.entity_list_id.is_not(None)),
        )
        .order_by(FormMedia.name)
    )
    served = []
    for media, blob in rows:
        if blob is not None:
            served.append(Served(media, blob.md5, blob.size, blob=blob))
        elif media.entity_list_id is not None:
            made = list_file(session, media.entity_list_id)
            served.append(Served(media, made.md5, made.size, data=made.data))
    return served


def _has_media(version: FormVersion) -> bool:
    return (
        db.session().scalar(
            select(FormMedia.id).where(
                FormMedia.form_version_id == version.id,
                (FormMedia.blob_sha256.is_not(None)) | (FormMedia.entity_list_id.is_not(None)),
            )
        )
        is not None
    )


# ---- form list, form, manifest, media ------------------------------------------------------------------


def _form_list(project_id: int, token: str | None) -> Response:
    app_user = _device(project_id, token)
    only = request.args.get("formID")
    entries = []
    for form in sorted(_visible_forms(app_user), key=lambda f: f.xml_form_id):
        if not _listable(form) or (only and form.xml_form_id != only):
            continue
        version = form.current_version
        assert version is not None
        links = _links(token, project_id, form.xml_form_id)
        entries.append(
            openrosa_replies.FormListEntry(
                form_id=form.xml_form_id,
                name=version.title or form.xml_form_id,
                version=version.version,
                md5=version.md5,
                download_url=_absolute(links["xml"]),
                manifest_url=_absolute(links["manifest"]) if _has_media(version) else None,
            )
        )
    return openrosa_replies.form_list(entries)


def _not_modified(etag: str) -> bool:
    return request.if_none_match.contains(etag)


def _form_xml(project_id: int, token: str | None, xml_form_id: str) -> Response:
    app_user = _device(project_id, token)
    _form, version = _listed_form(app_user, xml_form_id)
    etag = f"md5:{version.md5}"
    headers = {**openrosa_replies.headers(), "ETag": f'"{etag}"', "Cache-Control": "private, no-cache"}
    if _not_modified(etag):
        return Response(status=304, headers=headers)
    # Exactly the bytes whose md5 the form list advertises.
    return Response(version.xml.encode("utf-8"), content_type=openrosa_replies.XML_TYPE, headers=headers)


def _manifest(project_id: int, token: str | None, xml_form_id: str) -> Response:
    app_user = _device(project_id, token)
    form, version = _listed_form(app_user, xml_form_id)
    prefix = _links(token, project_id, form.xml_form_id)["media"]
    return openrosa_replies.manifest(
        openrosa_replies.ManifestEntry(s.media.name, s.md5, _absolute(prefix + quote(s.media.name, safe="")))
        for s in _served_media(version)
    )


def _media(project_id: int, token: str | None, xml_form_id: str, name: str) -> Response:
    app_user = _device(project_id, token)
    _form, version = _listed_form(app_user, xml_form_id)
    found = next((s for s in _served_media(version) if s.media.name == name), None)
    if found is None:
        raise errors.not_found(f"The form {xml_form_id!r} has no media file {name!r}.")
    media, blob = found.media, found.blob
    etag = f"md5:{found.md5}"
    headers = {**openrosa_replies.headers(), "ETag": f'"{etag}"', "Cache-Control": "private, no-cache"}
    if _not_modified(etag):
        return Response(status=304, headers=headers)
    headers["Content-Length"] = str(found.size)
    headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(media.name, safe='')}"
    if blob is None:
        return Response(found.data, content_type="text/csv; charset=utf-8", headers=headers)
    stream = db.database().blobs.open(blob.sha256)
    return Response(
        _chunks(stream),
        content_type=media.content_type or "application/octet-stream",
        headers=headers,
        direct_passthrough=True,
    )


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    with contextlib.closing(stream):
        while chunk := stream.read(256 * 1024):
            yield chunk


# ---- submission ----------------------------------------------------------------------------------------


def _head(project_id: int, token: str | None) -> Response:
    from server import devices

    devices.check_device_for_head(project_id, token)
    return openrosa_replies.submission_head()


_SPOOL_DIRS: set[Path] = set()


def _spool_dir() -> Path:
    path = Path(_settings().data_dir) / "spool"
    if path not in _SPOOL_DIRS:
        path.mkdir(parents=True, exist_ok=True)
        _SPOOL_DIRS.add(path)
    return path


def _spooled_file() -> IO[bytes]:
    """Where a file part is written: memory while small, then an unnamed file in the data dir (not /tmp,
    which may be a RAM disk), gone by itself when closed or when the process dies."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+b", dir=_spool_dir())  # type: ignore[return-value]


def _read_body() -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    if request.mimetype != "multipart/form-data":
        raise errors.bad_request(
            "A submission is sent as multipart/form-data with an xml_submission_file part."
        )
    return read_multipart(
        request.stream,
        request.mimetype_params.get("boundary", ""),
        new_file=_spooled_file,
        # An XML sent as a text part (without a filename) is held in memory up to the XML limit.
        text_limit=_settings().max_xml_bytes,
        max_parts=MAX_PARTS,
    )


def _xml_bytes(form: MultiDict[str, str], files: MultiDict[str, FileStorage]) -> bytes:
    limit = _settings().max_xml_bytes
    part = files.get(XML_PART)
    if part is not None:
        data = part.stream.read(limit + 1)
    elif XML_PART in form:  # some clients send it as a plain text part
        data = form[XML_PART].encode("utf-8")
    else:
        raise errors.bad_request("The submission has no xml_submission_file part.")
    if len(data) > limit:
        raise errors.too_large(limit)
    return data


def _attachment_parts(files: MultiDict[str, FileStorage]) -> list[tuple[str, FileStorage]]:
    parts = []
    for part_name, storage in files.items(multi=True):
        if part_name == XML_PART:
            continue
        # Collect names each part after its file (and sets the same filename); prefer the filename.
        parts.append((check_attachment_name(storage.filename or part_name), storage))
    return parts


def _submit(project_id: int, token: str | None) -> Response:
    app_user = _device(project_id, token)  # before the body: a bare request gets its challenge at once
    form_parts, files = _read_body()
    try:
        parsed = parse_submission(_xml_bytes(form_parts, files), _settings().max_xml_bytes)
        attachments = _attachment_parts(files)
        # Which form version (404 unknown, 409 closed), then whether this device may send to it (403).
        target = find_target(db.session(), project_id, parsed, Source.DEVICE)
        if not _may_submit(app_user, target, project_id):
            raise errors.forbidden(f"This device may not send submissions to the form {parsed.form_id!r}.")
        result = _ingest_staged(project_id, app_user, parsed, target, attachments, form_parts)
    finally:
        for _name, storage in files.items(multi=True):
            storage.close()
    nature = "submit_success" if result.accepted else "error"
    return openrosa_replies.message(result.message, status=result.status, nature=nature)


def _ingest_staged(
    project_id: int,
    app_user: AppUser,
    parsed: ParsedSubmission,
    target: FormTarget,
    attachments: list[tuple[str, FileStorage]],
    form_parts: MultiDict[str, str],
) -> IngestResult:
    """Stage the files, then ingest in a shared write transaction (group commit); publish the files once
    that has committed. No database lock is held while files are copied and fsynced."""
    database = db.database()
    staging = database.blobs.staging()
    # The job may run in another request's thread (whichever leads the group): everything it needs is taken
    # from this request here.
    incomplete = form_parts.get(INCOMPLETE_PART, "").strip().lower() == "yes"
    device_id = request.args.get("deviceID") or None
    user_agent = request.headers.get("User-Agent")
    max_xml_bytes = _settings().max_xml_bytes
    committed = False
    db.end_read()  # no read snapshot held while files are staged and the group commit runs
    try:
        staged: list[tuple[str, StagedBlob]] = [
            (name, staging.add_stream(storage.stream)) for name, storage in attachments
        ]

        def work(writer: Writer) -> IngestResult:
            return ingest(
                writer,
                project=project_id,
                xml_bytes=parsed.xml_bytes,
                parsed=parsed,
                target=target,
                attachments=staged,
                incomplete=incomplete,
                source=Source.DEVICE,
                app_user=app_user,
                device_id=device_id,
                user_agent=user_agent,
                max_xml_bytes=max_xml_bytes,
            )

        result = committer_for(current_app.extensions, database).run(work)
        committed = True
    finally:
        # Files whose rows committed are published; if the process dies first, recovery at the next
        # start (or `sarhad doctor`) rolls them forward. Without a commit they are thrown away.
        if committed:
            staging.publish()
        else:
            staging.discard()
    return result


# ---- routes: token in the URL --------------------------------------------------------------------------


@openrosa.get(f"{KEY}/formList")
def key_form_list(token: str, project_id: int) -> ResponseReturnValue:
    return _form_list(project_id, token)


@openrosa.get(f"{KEY}/forms/<xml_form_id>.xml")
def key_form_xml(token: str, project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return _form_xml(project_id, token, xml_form_id)


@openrosa.get(f"{KEY}/forms/<xml_form_id>/manifest")
def key_manifest(token: str, project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return _manifest(project_id, token, xml_form_id)


@openrosa.get(f"{KEY}/forms/<xml_form_id>/attachments/<name>")
def key_media(token: str, project_id: int, xml_form_id: str, name: str) -> ResponseReturnValue:
    return _media(project_id, token, xml_form_id, name)


@openrosa.route(f"{KEY}/submission", methods=["HEAD"])
def key_submission_head(token: str, project_id: int) -> ResponseReturnValue:
    return _head(project_id, token)


@openrosa.post(f"{KEY}/submission")
def key_submission(token: str, project_id: int) -> ResponseReturnValue:
    return _submit(project_id, token)


# ---- routes: Digest ------------------------------------------------------------------------------------


@openrosa.get(f"{DIGEST}/formList")
def digest_form_list(project_id: int) -> ResponseReturnValue:
    return _form_list(project_id, None)


@openrosa.get(f"{DIGEST_FORMS}/<xml_form_id>.xml")
def digest_form_xml(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return _form_xml(project_id, None, xml_form_id)


@openrosa.get(f"{DIGEST_FORMS}/<xml_form_id>/manifest")
def digest_manifest(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return _manifest(project_id, None, xml_form_id)


@openrosa.get(f"{DIGEST_FORMS}/<xml_form_id>/attachments/<name>")
def digest_media(project_id: int, xml_form_id: str, name: str) -> ResponseReturnValue:
    return _media(project_id, None, xml_form_id, name)


@openrosa.route(f"{DIGEST}/submission", methods=["HEAD"])
def digest_submission_head(project_id: int) -> ResponseReturnValue:
    return _head(project_id, None)


@openrosa.post(f"{DIGEST}/submission")
def digest_submission(project_id: int) -> ResponseReturnValue:
    return _submit(project_id, None)
