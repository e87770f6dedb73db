"""Form versions and their media: the rules of publishing, shared by the CLI and the /v1 API.

- A form is ``(project, xmlFormId)``; each upload becomes a ``FormVersion`` holding the XForm text that
  devices download, its md5/sha256 over the exact UTF-8 bytes served, the parsed field list and, when it
  came from a spreadsheet, the XLSForm in the blob store.
- Same form id, same version, same XForm → nothing to do: "already published" (media that were missing
  may be attached then). Same version with other content → refused (409.6): versions never change under
  the submissions that name them; the coordinator changes the version in the settings sheet.
- A new version becomes the form's current one (served to devices); older versions stay rows and keep
  accepting the submissions that name them.
- A draft is a version not yet published (``published_at`` is null): at most one per form, not served
  to devices, published later as ODK Central does (``POST .../draft/publish``).
- Media are stored content-addressed, so a new version with the same files reuses the same blobs. A new
  version or draft takes a file it references but was not given from the form's current version (as
  Central carries attachments over). A version published with media still missing says which.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server import audit, errors
from server.config import Settings
from server.db import Writer
from server.entities import forms as entity_forms
from server.forms.convert import Conversion, convert_xlsform, fallback_form_id, file_type_of
from server.forms.xform import XFormInfo, parse_xform, with_version
from server.models import (
    Form,
    FormMedia,
    FormState,
    FormVersion,
    Project,
    SubmissionVersion,
    User,
    utcnow,
)
from server.project_keys import encrypted_xml, project_key

ITEMSETS_CSV = "itemsets.csv"


@dataclass(frozen=True)
class FormSource:
    """An uploaded form, converted and parsed, before anything is written."""

    xml: str
    info: XFormInfo
    warnings: tuple[str, ...] = ()
    xlsform: bytes | None = None
    xlsform_filename: str | None = None
    # Media pyxform generates (itemsets.csv for select_one_external); they take precedence.
    generated_media: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.xml.encode("utf-8")).hexdigest()


@dataclass
class Outcome:
    """What a publish, draft or attach did, in words for a person and in fields for a client."""

    form: Form
    version: FormVersion
    status: str  # created | published | already_published | draft
    message: str
    warnings: list[str] = field(default_factory=list)
    missing_media: list[str] = field(default_factory=list)
    attached_media: list[str] = field(default_factory=list)


def source_from_xlsform(
    data: bytes,
    settings: Settings,
    *,
    filename: str | None = None,
    file_type: str | None = None,
    fallback_id: str | None = None,
) -> FormSource:
    """Convert a spreadsheet (in a child process, time-limited) and parse the XForm it gives.

    The file type comes from ``file_type`` (".xlsx"...) or the file name. When the settings sheet names
    no form id, the form takes ``fallback_id`` (Central's X-XlsForm-FormId-Fallback) exactly, else the
    file name's stem (tidied to letters, digits and ``._-``), else pyxform's default ("data").
    """
    file_type = file_type or (file_type_of(filename) if filename else None)
    if file_type is None:
        raise errors.invalid_form(f"{filename!r} is not an XLSForm (.xlsx, .xls, .xlsm, .csv or .md).")
    converted: Conversion = convert_xlsform(
        data,
        file_type,
        # Central's header is taken as it is (pyodk sends "uuid:..."); a file name is tidied first.
        fallback_id=fallback_id or fallback_form_id(Path(filename).stem if filename else None),
        timeout=settings.conversion_timeout_seconds,
    )
    info = parse_xform(converted.xform, settings.max_xml_bytes)
    generated = {ITEMSETS_CSV: converted.itemsets_csv.encode("utf-8")} if converted.itemsets_csv else {}
    return FormSource(converted.xform, info, converted.warnings, data, filename, generated)


def source_from_xform(data: bytes, settings: Settings) -> FormSource:
    """An XForm uploaded as it is; stored and served byte for byte."""
    if len(data) > settings.max_xml_bytes:
        raise errors.too_large(settings.max_xml_bytes)
    try:
        xml = data.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid_form("The XForm must be encoded in UTF-8.") from None
    return FormSource(xml, parse_xform(data, settings.max_xml_bytes))


def find_form(session: Session, project_id: int, xml_form_id: str, *, lock: bool = False) -> Form:
    query = select(Form).where(
        Form.project_id == project_id, Form.xml_form_id == xml_form_id, Form.deleted_at.is_(None)
    )
    form = session.scalar(query.with_for_update() if lock else query)
    if form is None:
        raise errors.not_found(f"There is no form {xml_form_id!r} in this project.")
    return form


def find_draft(session: Session, form: Form) -> FormVersion | None:
    return session.scalar(
        select(FormVersion)
        .where(FormVersion.form_id == form.id, FormVersion.published_at.is_(None))
        .order_by(FormVersion.id.desc())
        .limit(1)
    )


def published_versions(session: Session, form: Form) -> list[FormVersion]:
    """Published versions, newest first."""
    return list(
        session.scalars(
            select(FormVersion)
            .where(FormVersion.form_id == form.id, FormVersion.published_at.is_not(None))
            .order_by(FormVersion.published_at.desc(), FormVersion.id.desc())
        )
    )


def published_version(session: Session, form_id: int, version: str) -> FormVersion | None:
    """The published version of a form that submissions with this ``version`` attribute belong to."""
    return session.scalar(
        select(FormVersion)
        .where(
            FormVersion.form_id == form_id,
            FormVersion.version == version,
            FormVersion.published_at.is_not(None),
        )
        .order_by(FormVersion.id.desc())
        .limit(1)
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _content_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    if name.lower().endswith(".csv"):
        return "text/csv"
    return guessed or "application/octet-stream"


def _shown(version: str) -> str:
    return repr(version) if version else "(no version)"


def _referenced_media(source: FormSource) -> list[str]:
    names = list(source.info.media_names)
    names += [n for n in source.generated_media if n not in names]
    return names


def with_project_key(session: Session, project: Project, source: FormSource) -> FormSource:
    """A form of a project with managed encryption gets the project's public key and its version
    suffix (the same suffix every time, so publishing the same file again is "already published").
    A form that brings its own ``public_key`` keeps it."""
    key = project_key(session, project)
    if key is None or source.info.public_key is not None:
        return source
    xml, _version = encrypted_xml(source.xml, key, source.info.version)
    return replace(source, xml=xml, info=parse_xform(xml, max_bytes=len(xml.encode()) + 1))


def _lock_or_create_form(writer: Writer, project: Project, form_id: str) -> tuple[Form, bool]:
    session = writer.session
    existing = session.scalar(
        select(Form)
        .where(Form.project_id == project.id, Form.xml_form_id == form_id)
        .with_for_update()  # two uploads of one form wait for each other (PostgreSQL; SQLite writes serially)
    )
    if existing is not None:
        if existing.deleted_at is not None:
            raise errors.conflict(f"A deleted form in this project used the id {form_id!r}; choose another.")
        return existing, False
    form = Form(project_id=project.id, xml_form_id=form_id, state=FormState.OPEN)
    try:
        # In a savepoint: when another upload created the same form a moment ago, the unique constraint
        # refuses this one and the caller gets a clear 409 instead of a failed transaction.
        with session.begin_nested():
            session.add(form)
            session.flush()
    except IntegrityError:
        raise errors.conflict(
            f"The form {form_id!r} was being created by another upload at the same time; try again."
        ) from None
    return form, True


def _new_version(
    writer: Writer,
    form: Form,
    source: FormSource,
    media: Mapping[str, bytes],
    actor: User | None,
    published: bool,
    also_names: tuple[str, ...] = (),
) -> tuple[FormVersion, list[str], list[str]]:
    """Insert a version with its media rows; returns it, the names attached and the names missing.
    ``also_names``: media the version needs beyond those the XForm names (a copy's itemsets.csv)."""
    session = writer.session
    entity_forms.check_form(source.xml, source.info.fields)  # before anything is written
    data = source.xml.encode("utf-8")
    version = FormVersion(
        form_id=form.id,
        version=source.info.version,
        title=source.info.title,
        xml=source.xml,
        md5=hashlib.md5(data).hexdigest(),
        sha256=_sha256(data),
        xlsform_sha256=writer.store_bytes(source.xlsform) if source.xlsform is not None else None,
        xlsform_filename=source.xlsform_filename,
        public_key=source.info.public_key,
        fields=source.info.field_dicts(),
        published_at=utcnow() if published else None,
        created_by_id=actor.id if actor else None,
    )
    session.add(version)
    session.flush()
    previous = {m.name: m.blob_sha256 for m in form.current_version.media} if form.current_version else {}
    attached, missing = [], []
    names = _referenced_media(source)
    for name in [*names, *(n for n in also_names if n not in names)]:
        content = source.generated_media.get(name, media.get(name))
        if content is not None:
            blob = writer.store_bytes(content)
            attached.append(name)
        else:
            blob = previous.get(name)
        version.media.append(FormMedia(name=name, blob_sha256=blob, content_type=_content_type(name)))
    session.flush()
    if published:
        entity_forms.publish_lists(session, form.project, version, actor)
    else:
        entity_forms.link_media(session, form.project_id, version)
    missing = _missing_media(version)
    return version, attached, missing


def _missing_media(version: FormVersion) -> list[str]:
    """Files ``version`` names but has not got (an entity list's CSV is made on request, never missing)."""
    return [m.name for m in version.media if m.blob_sha256 is None and m.entity_list_id is None]


def _complete_published(
    writer: Writer,
    form: Form,
    version: FormVersion,
    media: Mapping[str, bytes | str],
    actor: User | None,
    via: str,
) -> tuple[list[str], list[str], str]:
    """An upload or draft that repeats a published version: keep that version, attach the media it was
    missing (audited). Returns (attached, still missing, the message)."""
    filled = _fill_media(writer, version, media)
    missing = _missing_media(version)
    if filled:
        form.updated_at = utcnow()
        _audit(
            writer.session,
            "form.attachment.update",
            form,
            version,
            actor,
            via,
            attached=filled,
            missing=missing,
        )
    message = f"{form.xml_form_id} version {_shown(version.version)} is already published"
    message += f"; attached missing media: {', '.join(filled)}" if filled else "; nothing changed"
    return filled, missing, message


def _fill_media(writer: Writer, version: FormVersion, media: Mapping[str, bytes | str]) -> list[str]:
    """Attach files that ``version`` still misses; refuse a file that differs from one it has.

    ``media`` maps names to bytes, or to the sha256 of a stored blob (a draft's attachments).
    """
    filled = []
    for row in version.media:
        given = media.get(row.name)
        if given is None:
            continue
        sha = given if isinstance(given, str) else _sha256(given)
        if row.blob_sha256 is None:
            row.blob_sha256 = sha if isinstance(given, str) else writer.store_bytes(given)
            filled.append(row.name)
        elif row.blob_sha256 != sha:
            raise errors.published_version_differs(
                f"{row.name} differs from the file published with version {_shown(version.version)}. "
                "A published version never changes: change the version in the settings sheet to "
                "publish new media.",
                media=row.name,
                version=version.version,
            )
    return filled


def _refuse_changed_version(form: Form, version: str) -> errors.Problem:
    return errors.published_version_differs(
        f"Version {_shown(version)} of form {form.xml_form_id!r} is already published with different "
        "content. A published version never changes: change the version in the settings sheet "
        "(e.g. to today's date and time) and publish again.",
        xmlFormId=form.xml_form_id,
        version=version,
    )


def _missing_warning(missing: list[str]) -> list[str]:
    if not missing:
        return []
    return [
        f"Media the form uses were not supplied: {', '.join(missing)}. Devices cannot use them until "
        "they are attached: put them beside the XLSForm and run `sarhad forms publish` again, or upload "
        "them to a draft (POST .../draft, .../draft/attachments/NAME, .../draft/publish)."
    ]


def publish(
    writer: Writer,
    project: Project,
    source: FormSource,
    media: Mapping[str, bytes] | None = None,
    actor: User | None = None,
    via: str = "api",
) -> Outcome:
    """Publish an uploaded form under the version rules (module docstring)."""
    media = media or {}
    session = writer.session
    source = with_project_key(session, project, source)
    form, created = _lock_or_create_form(writer, project, source.info.form_id)
    same_version = published_version(session, form.id, source.info.version) if not created else None
    if same_version is not None:
        if same_version.sha256 != source.sha256:
            raise _refuse_changed_version(form, source.info.version)
        filled, missing, message = _complete_published(
            writer, form, same_version, {**media, **source.generated_media}, actor, via
        )
        warnings = [*source.warnings, *_missing_warning(missing)]
        return Outcome(form, same_version, "already_published", message, warnings, missing, filled)

    previous = form.current_version
    version, attached, missing = _new_version(writer, form, source, media, actor, published=True)
    form.current_version_id = version.id
    form.current_version = version
    form.updated_at = utcnow()
    described = f"{form.xml_form_id} version {_shown(version.version)} ({version.title or 'no title'})"
    if created:
        message = f"published new form {described}"
    else:
        message = f"published {described}"
        if previous is not None:
            message += f"; version {_shown(previous.version)} still accepts its submissions"
    if created:
        _audit(session, "form.create", form, version, actor, via)
    _audit(session, "form.update.publish", form, version, actor, via, attached=attached, missing=missing)
    return Outcome(
        form,
        version,
        "created" if created else "published",
        message,
        [*source.warnings, *_missing_warning(missing)],
        missing,
        attached,
    )


def save_draft(
    writer: Writer,
    project: Project,
    source: FormSource,
    actor: User | None = None,
    expected_form_id: str | None = None,
    via: str = "api",
) -> Outcome:
    """Make ``source`` the form's draft (replacing an earlier draft); the form is created if new."""
    if expected_form_id is not None and source.info.form_id != expected_form_id:
        raise errors.invalid_form(
            f"The uploaded form's id is {source.info.form_id!r}, not {expected_form_id!r}.",
            xmlFormId=source.info.form_id,
        )
    session = writer.session
    source = with_project_key(session, project, source)
    form, created = _lock_or_create_form(writer, project, source.info.form_id)
    old = find_draft(session, form)
    if old is not None:
        _discard(session, old)
    version, attached, missing = _new_version(writer, form, source, {}, actor, published=False)
    form.updated_at = utcnow()
    if created:
        _audit(session, "form.create", form, version, actor, via)
    _audit(session, "form.update.draft.set", form, version, actor, via, missing=missing)
    message = f"saved a draft of {form.xml_form_id} version {_shown(version.version)}"
    if created:
        message += " (a new form: publish the draft to serve it to devices)"
    return Outcome(form, version, "draft", message, list(source.warnings), missing, attached)


def draft_from_current(writer: Writer, form: Form, actor: User | None, via: str = "api") -> Outcome:
    """A draft copied from the published version (Central's draft POST with no body)."""
    current = form.current_version
    if current is None:
        raise errors.not_found(f"The form {form.xml_form_id!r} has no published version to copy.")
    source = FormSource(current.xml, parse_xform(current.xml, max_bytes=len(current.xml.encode()) + 1))
    old = find_draft(writer.session, form)
    if old is not None:
        _discard(writer.session, old)
    same_files = tuple(m.name for m in current.media)
    version, _, missing = _new_version(
        writer, form, source, {}, actor, published=False, also_names=same_files
    )
    version.xlsform_sha256, version.xlsform_filename = current.xlsform_sha256, current.xlsform_filename
    form.updated_at = utcnow()
    _audit(writer.session, "form.update.draft.set", form, version, actor, via, missing=missing, copied=True)
    return Outcome(form, version, "draft", f"copied {form.xml_form_id} into a draft", [], missing)


def attach_to_draft(
    writer: Writer,
    form: Form,
    name: str,
    content: bytes | BinaryIO,
    actor: User | None,
    via: str = "api",
) -> FormMedia:
    """Store a media file the draft references (Central: 404 for a name the form does not use).
    ``content`` may be a stream (a video can be large): it is written to the blob store as it comes."""
    draft = find_draft(writer.session, form)
    if draft is None:
        raise errors.not_found(f"The form {form.xml_form_id!r} has no draft: create one first.")
    row = next((m for m in draft.media if m.name == name), None)
    if row is None:
        raise errors.not_found(f"The draft of {form.xml_form_id!r} does not use a media file named {name!r}.")
    row.blob_sha256 = (
        writer.store_bytes(content) if isinstance(content, bytes) else writer.store_stream(content)
    )
    form.updated_at = utcnow()
    _audit(writer.session, "form.attachment.update", form, draft, actor, via, attached=[name])
    return row


def publish_draft(
    writer: Writer, form: Form, actor: User | None, new_version: str | None = None, via: str = "api"
) -> Outcome:
    """Publish the form's draft under the version rules; ``new_version`` rewrites its version first."""
    session = writer.session
    draft = find_draft(session, form)
    if draft is None:
        raise errors.not_found(f"The form {form.xml_form_id!r} has no draft to publish.")
    if new_version is not None and new_version != draft.version:
        xml = with_version(draft.xml, new_version, max_bytes=len(draft.xml.encode()) + 1024)
        data = xml.encode("utf-8")
        draft.xml, draft.version = xml, new_version
        draft.md5, draft.sha256 = hashlib.md5(data).hexdigest(), _sha256(data)
    same_version = published_version(session, form.id, draft.version)
    if same_version is not None:
        if same_version.sha256 != draft.sha256:
            raise _refuse_changed_version(form, draft.version)
        # The draft repeats a published version: keep that one, take the media it was missing.
        filled, missing, message = _complete_published(
            writer,
            form,
            same_version,
            {m.name: m.blob_sha256 for m in draft.media if m.blob_sha256},
            actor,
            via,
        )
        _discard(session, draft)
        return Outcome(
            form, same_version, "already_published", message, _missing_warning(missing), missing, filled
        )
    previous = form.current_version
    draft.published_at = utcnow()
    entity_forms.publish_lists(session, form.project, draft, actor)
    form.current_version_id = draft.id
    form.current_version = draft
    form.updated_at = utcnow()
    missing = _missing_media(draft)
    _audit(session, "form.update.publish", form, draft, actor, via, missing=missing, from_draft=True)
    message = f"published {form.xml_form_id} version {_shown(draft.version)} ({draft.title or 'no title'})"
    if previous is not None:
        message += f"; version {_shown(previous.version)} still accepts its submissions"
    return Outcome(form, draft, "published", message, _missing_warning(missing), missing)


def discard_draft(writer: Writer, form: Form, actor: User | None, via: str = "api") -> None:
    draft = find_draft(writer.session, form)
    if draft is None:
        raise errors.not_found(f"The form {form.xml_form_id!r} has no draft.")
    _discard(writer.session, draft)
    _audit(writer.session, "form.update.draft.delete", form, draft, actor, via)


def set_state(session: Session, form: Form, state: str, actor: User | None, via: str = "api") -> None:
    if state not in set(FormState):
        raise errors.bad_request(f"Unknown form state {state!r}: use open, closing or closed.")
    before = form.state
    form.state = state
    form.updated_at = utcnow()
    audit.record(
        session,
        "form.update",
        actor=actor,
        project_id=form.project_id,
        target_type="form",
        target_id=form.xml_form_id,
        before=before,
        after=state,
        via=via,
    )


def _discard(session: Session, draft: FormVersion) -> None:
    used = session.scalar(
        select(func.count())
        .select_from(SubmissionVersion)
        .where(SubmissionVersion.form_version_id == draft.id)
    )
    if used:
        raise errors.conflict("The draft already has submissions and cannot be replaced.")
    for row in list(draft.media):
        session.delete(row)
    session.flush()
    session.delete(draft)
    session.flush()


def _audit(
    session: Session,
    action: str,
    form: Form,
    version: FormVersion,
    actor: User | None,
    via: str,
    **details: Any,
) -> None:
    audit.record(
        session,
        action,
        actor=actor,
        project_id=form.project_id,
        target_type="form",
        target_id=form.xml_form_id,
        version=version.version,
        sha256=version.sha256,
        via=via,
        **details,
    )
