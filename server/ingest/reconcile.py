"""The identity, version and conflict decisions of ingest: one place, each branch named.

A submission is ``(form, instanceID of its first version)``; a version is the sha256 of its XML bytes.
For a parsed submission, in this order:

1. **resend** — a version of this form already has this instanceID and the same sha256: success again;
   files that came with it and were expected but missing are filled in (split uploads, late files).
2. **conflict** — that instanceID is taken by *other* XML: nothing is changed, the payload and its files
   are kept as a ``Conflict`` for a coordinator (the same payload twice is kept once), the sender is told.
3. **edit** — a new instanceID whose ``deprecatedID`` is the *current* version of a submission: a new
   version of it, which becomes current; review state "edited"; files not re-sent carry over by name.
4. **stale edit** — a ``deprecatedID`` naming an older version, or one unknown here: kept as a conflict.
5. **create** — anything else: a new submission and its first version.

Every file a version names (binary fields, ``meta/audit``, an encrypted envelope's files) gets a row, with
no blob while it has not arrived. A file the XML does not name is still kept as a row of the version it
came with: a device sent it, so it is not ours to drop (it counts as expected and present).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from server import audit, errors
from server.blobs import StagedBlob
from server.db import Writer
from server.ingest.parse import ParsedSubmission, expected_attachments, relative_path
from server.ingest.places import places
from server.models import (
    AppUser,
    Conflict,
    ConflictAttachment,
    Form,
    FormState,
    FormVersion,
    ReviewState,
    Source,
    Submission,
    SubmissionAttachment,
    SubmissionVersion,
    User,
    utcnow,
)

# Sources that carry data already collected in the field (possibly before a form was closed): closing a
# form on central must not make a hub or a bundle lose what it holds.
FIELD_SOURCES = frozenset({Source.HUB, Source.FOLDER, Source.BUNDLE})


class Outcome(enum.StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    UPDATED_ATTACHMENTS = "updated_attachments"
    EDITED = "edited"
    CONFLICT = "conflict"


class ConflictReason(enum.StrEnum):
    INSTANCE_ID_TAKEN = "instance_id_taken"  # same instanceID, other XML, no deprecatedID
    STALE_EDIT = "stale_edit"  # deprecatedID names a version that is no longer current
    UNKNOWN_DEPRECATED = "unknown_deprecated"  # deprecatedID names nothing on this server
    ATTACHMENT_DIFFERS = "attachment_differs"  # a resent file with the same name but other bytes


CONFLICT_MESSAGES = {
    ConflictReason.INSTANCE_ID_TAKEN: (
        "A different submission with this ID is already on the server; it has been kept for the "
        "coordinator to review."
    ),
    ConflictReason.STALE_EDIT: (
        "This edit is based on an older version of the submission, which has changed on the server "
        "since; it has been kept for the coordinator to review."
    ),
    ConflictReason.UNKNOWN_DEPRECATED: (
        "This edit changes a submission the server does not have; it has been kept for the coordinator "
        "to review."
    ),
}
RECEIVED = "Thank you: your submission was received."
EDIT_RECEIVED = "Thank you: your edited submission was received."


@dataclass(frozen=True)
class Provenance:
    """Who sent a payload, from where, and when: recorded on the version or the conflict."""

    source: Source = Source.DEVICE
    source_detail: str | None = None
    device_id: str | None = None
    user_agent: str | None = None
    app_user: AppUser | None = None
    user: User | None = None
    received_at: dt.datetime = field(default_factory=utcnow)

    @property
    def actor(self) -> AppUser | User | None:
        return self.app_user or self.user

    def columns(self) -> dict[str, object]:
        return {
            "source": self.source,
            "source_detail": (self.source_detail or None) and self.source_detail[:255],
            "device_id": (self.device_id or None) and self.device_id[:255],
            "user_agent": (self.user_agent or None) and self.user_agent[:500],
            "app_user_id": self.app_user.id if self.app_user else None,
            "user_id": self.user.id if self.user else None,
            "received_at": self.received_at,
        }


@dataclass(frozen=True)
class FormTarget:
    """The form and published version a submission names, with what ingest needs of its fields."""

    form_id: int
    xml_form_id: str
    state: str
    form_version_id: int
    binary_paths: frozenset[str]
    xform_sha256: str = ""  # of the version's XForm: with its id, the key of what is cached about it


@dataclass
class IngestResult:
    """What ingest decided. ``submission`` and ``version`` are loaded on first use, from the session of
    the write transaction: read them before it ends (the OpenRosa route never needs them)."""

    outcome: Outcome
    message: str
    session: Session | None = None
    submission_id: int | None = None
    version_id: int | None = None
    conflict: Conflict | None = None
    conflict_reason: ConflictReason | None = None
    expected: list[str] = field(default_factory=list)  # every file the version names or came with
    missing: list[str] = field(default_factory=list)  # of those, the ones not received yet
    instance_id: str | None = None
    # Files of an accepted resend whose bytes differ from the ones already held: kept in ``conflict``.
    differing: list[str] = field(default_factory=list)

    @property
    def submission(self) -> Submission | None:
        if self.session is None or self.submission_id is None:
            return None
        return self.session.get(Submission, self.submission_id)

    @property
    def version(self) -> SubmissionVersion | None:
        if self.session is None or self.version_id is None:
            return None
        return self.session.get(SubmissionVersion, self.version_id)

    @property
    def accepted(self) -> bool:
        return self.outcome is not Outcome.CONFLICT

    @property
    def status(self) -> int:
        """The HTTP status a device expects: 201 for anything applied, 409 for a kept conflict."""
        return 201 if self.accepted else 409

    def problem(self) -> errors.Problem:
        """The 409 of a conflict, for callers that answer with a Problem. Raising it rolls the
        transaction back, and with it the kept payload: return a 409 instead where the caller commits."""
        return errors.conflict(self.message, reason=str(self.conflict_reason), instanceId=self.instance_id)


# ---- which form ----------------------------------------------------------------------------------------

_FORM = Form.__table__
_FORM_VERSION = FormVersion.__table__
_SUBMISSION = Submission.__table__
_VERSION = SubmissionVersion.__table__
_ATTACHMENT = SubmissionAttachment.__table__

# The statements of every submission, built once: SQLAlchemy then reuses their compiled form and cache key
# (measurably cheaper per request than building them anew).
_FIND_TARGET = (
    select(_FORM.c.id, _FORM.c.state, _FORM_VERSION.c.id, _FORM_VERSION.c.sha256)
    .select_from(_FORM)
    .outerjoin(
        _FORM_VERSION,
        and_(
            _FORM_VERSION.c.form_id == _FORM.c.id,
            _FORM_VERSION.c.version == bindparam("version"),
            _FORM_VERSION.c.published_at.is_not(None),
        ),
    )
    .where(
        _FORM.c.project_id == bindparam("project_id"),
        _FORM.c.xml_form_id == bindparam("xml_form_id"),
        _FORM.c.deleted_at.is_(None),
    )
    .order_by(_FORM_VERSION.c.id.desc())
    .limit(1)
)
_SAME_INSTANCE = select(_VERSION.c.id, _VERSION.c.submission_id, _VERSION.c.sha256).where(
    _VERSION.c.form_id == bindparam("form_id"), _VERSION.c.instance_id == bindparam("instance_id")
)
_INSERT_SUBMISSION = insert(_SUBMISSION).returning(_SUBMISSION.c.id)
_INSERT_VERSION = insert(_VERSION).returning(_VERSION.c.id)
_SET_CURRENT = (
    update(_SUBMISSION)
    .where(_SUBMISSION.c.id == bindparam("submission_pk"))
    .values(current_version_id=bindparam("version_pk"))
)

# Binary field paths by (form version id, XForm sha256). A published version's XForm never changes, and
# the sha256 in the key makes a reused id (SQLite may reuse the id of a deleted draft) a cache miss.
_BINARY_PATHS: dict[tuple[int, str], frozenset[str]] = {}
_BINARY_PATHS_MAX = 2048


def _binary_paths(session: Session, form_version_id: int, sha256: str) -> frozenset[str]:
    key = (form_version_id, sha256)
    cached = _BINARY_PATHS.get(key)
    if cached is None:
        fields = session.scalar(select(FormVersion.fields).where(FormVersion.id == form_version_id)) or []
        cached = frozenset(
            relative_path(f["path"]) for f in fields if isinstance(f, Mapping) and f.get("binary")
        )
        if len(_BINARY_PATHS) >= _BINARY_PATHS_MAX:
            _BINARY_PATHS.clear()
        _BINARY_PATHS[key] = cached
    return cached


def find_target(session: Session, project_id: int, parsed: ParsedSubmission, source: Source) -> FormTarget:
    """The form version a submission belongs to: 404 unknown form or version, 409 closed form."""
    row = (
        session.connection()
        .execute(
            _FIND_TARGET,
            {"version": parsed.version, "project_id": project_id, "xml_form_id": parsed.form_id},
        )
        .first()
    )
    if row is None:
        raise errors.not_found(f"There is no form {parsed.form_id!r} in this project.")
    form_pk, state, version_pk, version_sha = row
    if version_pk is None:
        shown = repr(parsed.version) if parsed.version else "(no version)"
        raise errors.not_found(
            f"The form {parsed.form_id!r} has no published version {shown}: update the form on the "
            "device (Get blank form) and fill it again, or ask the coordinator to publish that version."
        )
    if state == FormState.CLOSED and source not in FIELD_SOURCES:
        raise errors.form_closed(parsed.form_id)
    return FormTarget(
        form_pk,
        parsed.form_id,
        state,
        version_pk,
        _binary_paths(session, version_pk, version_sha),
        version_sha,
    )


def target_of_version(session: Session, version: SubmissionVersion) -> FormTarget:
    """The form version a stored submission version belongs to. Unlike :func:`find_target` it does not
    refuse a closed form: files completing a submission already accepted are never turned away."""
    form = session.get(Form, version.form_id)
    form_version = session.get(FormVersion, version.form_version_id)
    assert form is not None and form_version is not None  # foreign keys
    return FormTarget(
        form.id,
        form.xml_form_id,
        form.state,
        form_version.id,
        _binary_paths(session, form_version.id, form_version.sha256),
        form_version.sha256,
    )


# ---- the decision --------------------------------------------------------------------------------------


def reconcile(
    writer: Writer,
    project_id: int,
    target: FormTarget,
    parsed: ParsedSubmission,
    files: Mapping[str, StagedBlob],
    provenance: Provenance,
) -> IngestResult:
    conn = writer.session.connection()
    expected = expected_attachments(parsed, target.binary_paths)
    same_id = conn.execute(
        _SAME_INSTANCE, {"form_id": target.form_id, "instance_id": parsed.instance_id}
    ).first()
    if same_id is not None:
        version_pk, submission_pk, sha256 = same_id
        if sha256 == parsed.sha256:
            return _resend(writer, project_id, target, parsed, version_pk, submission_pk, files, provenance)
        return _keep_conflict(
            writer, project_id, target, parsed, files, provenance, ConflictReason.INSTANCE_ID_TAKEN
        )
    if parsed.deprecated_id:
        prior = conn.execute(
            select(_VERSION.c.id, _VERSION.c.submission_id, _SUBMISSION.c.current_version_id)
            .join(_SUBMISSION, _SUBMISSION.c.id == _VERSION.c.submission_id)
            .where(
                _VERSION.c.form_id == target.form_id,
                _VERSION.c.instance_id == parsed.deprecated_id,
            )
        ).first()
        if prior is None:
            reason = ConflictReason.UNKNOWN_DEPRECATED
        elif prior.current_version_id != prior.id:
            reason = ConflictReason.STALE_EDIT
        else:
            return _edit(writer, target, parsed, prior.id, prior.submission_id, expected, files, provenance)
        return _keep_conflict(writer, project_id, target, parsed, files, provenance, reason)
    return _create(writer, target, parsed, expected, files, provenance)


def _add_blob_rows(writer: Writer, files: Mapping[str, StagedBlob]) -> None:
    # Sorted, so that two transactions adding the same blobs take their row locks in the same order.
    for staged in sorted({f.sha256: f for f in files.values()}.values(), key=lambda f: f.sha256):
        writer.add_blob(staged)


def _new_version(
    writer: Writer,
    submission_pk: int,
    target: FormTarget,
    parsed: ParsedSubmission,
    provenance: Provenance,
) -> int:
    row = {
        "submission_id": submission_pk,
        "form_id": target.form_id,
        "form_version_id": target.form_version_id,
        "instance_id": parsed.instance_id,
        "deprecated_id": parsed.deprecated_id,
        "instance_name": parsed.instance_name,
        "xml": parsed.xml,
        "sha256": parsed.sha256,
        "encrypted": parsed.encrypted,
        **provenance.columns(),
    }
    return int(writer.session.connection().execute(_INSERT_VERSION, row).scalar_one())


def _attachment_rows(
    writer: Writer,
    version_pk: int,
    expected: list[str],
    files: Mapping[str, StagedBlob],
    received_at: dt.datetime,
    carried: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """One row per expected or received file; returns (all names, names still missing)."""
    names = list(dict.fromkeys([*expected, *sorted(files)]))
    missing: list[str] = []
    rows = []
    for name in names:
        blob = files[name].sha256 if name in files else (carried or {}).get(name)
        if blob is None:
            missing.append(name)
        rows.append(
            {
                "version_id": version_pk,
                "name": name,
                "blob_sha256": blob,
                "received_at": received_at if blob else None,
            }
        )
    if rows:
        writer.session.connection().execute(insert(_ATTACHMENT), rows)
    return names, missing


def _create(
    writer: Writer,
    target: FormTarget,
    parsed: ParsedSubmission,
    expected: list[str],
    files: Mapping[str, StagedBlob],
    provenance: Provenance,
) -> IngestResult:
    conn = writer.session.connection()
    _add_blob_rows(writer, files)
    new_submission = {
        "form_id": target.form_id,
        "instance_id": parsed.instance_id,
        "review_state": ReviewState.RECEIVED,
        "created_at": provenance.received_at,
        # What the console filters by, each through its own index (the device that sent it first).
        "app_user_id": provenance.app_user.id if provenance.app_user else None,
        **places(parsed.leaves),
    }
    submission_pk = int(conn.execute(_INSERT_SUBMISSION, new_submission).scalar_one())
    version_pk = _new_version(writer, submission_pk, target, parsed, provenance)
    conn.execute(_SET_CURRENT, {"submission_pk": submission_pk, "version_pk": version_pk})
    names, missing = _attachment_rows(writer, version_pk, expected, files, provenance.received_at)
    return IngestResult(
        Outcome.CREATED,
        RECEIVED,
        writer.session,
        submission_pk,
        version_pk,
        expected=names,
        missing=missing,
        instance_id=parsed.instance_id,
    )


def _edit(
    writer: Writer,
    target: FormTarget,
    parsed: ParsedSubmission,
    prior_pk: int,
    submission_pk: int,
    expected: list[str],
    files: Mapping[str, StagedBlob],
    provenance: Provenance,
) -> IngestResult:
    """A new version of the submission whose current version the edit names; history is kept."""
    session = writer.session
    _add_blob_rows(writer, files)
    # Files the edit names but did not send again are the ones the previous version holds (Collect sends
    # an edit's media again, other clients may not).
    carried: dict[str, str] = {
        name: blob
        for name, blob in session.execute(
            select(SubmissionAttachment.name, SubmissionAttachment.blob_sha256).where(
                SubmissionAttachment.version_id == prior_pk, SubmissionAttachment.blob_sha256.is_not(None)
            )
        )
    }
    version_pk = _new_version(writer, submission_pk, target, parsed, provenance)
    names, missing = _attachment_rows(writer, version_pk, expected, files, provenance.received_at, carried)
    session.connection().execute(
        update(_SUBMISSION)
        .where(_SUBMISSION.c.id == submission_pk)
        .values(
            current_version_id=version_pk,
            review_state=ReviewState.EDITED,
            updated_at=provenance.received_at,
            **places(parsed.leaves),  # an edit may correct the place
        )
    )
    _expire_loaded(session, Submission, submission_pk)
    return IngestResult(
        Outcome.EDITED,
        EDIT_RECEIVED,
        session,
        submission_pk,
        version_pk,
        expected=names,
        missing=missing,
        instance_id=parsed.instance_id,
    )


def _expire_loaded(session: Session, model: type, pk: int) -> None:
    """Rows changed with Core statements: a copy the caller already loaded must be read again."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, model) and getattr(obj, "id", None) == pk:
            session.expire(obj)


def _resend(
    writer: Writer,
    project_id: int,
    target: FormTarget,
    parsed: ParsedSubmission,
    version_pk: int,
    submission_pk: int,
    files: Mapping[str, StagedBlob],
    provenance: Provenance,
) -> IngestResult:
    """The same XML again: success, and the files that came with it are added where they were missing."""
    session = writer.session
    query = select(SubmissionAttachment).where(SubmissionAttachment.version_id == version_pk)
    rows = {a.name: a for a in session.scalars(query)}
    changed = False
    differing: dict[str, StagedBlob] = {}
    if files:
        _add_blob_rows(writer, files)
    for name, staged in sorted(files.items()):
        row = rows.get(name)
        if row is None:  # a file the XML does not name: kept with the version it came with
            row = SubmissionAttachment(
                version_id=version_pk,
                name=name,
                blob_sha256=staged.sha256,
                received_at=provenance.received_at,
            )
            session.add(row)
            rows[name] = row
            changed = True
        elif row.blob_sha256 is None:
            row.blob_sha256 = staged.sha256
            row.received_at = provenance.received_at
            changed = True
        elif row.blob_sha256 != staged.sha256:
            differing[name] = staged
    if changed:
        session.flush()
    kept: IngestResult | None = None
    if differing:  # never overwrite a received file; never drop the other one either
        kept = _keep_conflict(
            writer, project_id, target, parsed, differing, provenance, ConflictReason.ATTACHMENT_DIFFERS
        )
    names = sorted(rows)
    missing = sorted(n for n, r in rows.items() if r.blob_sha256 is None)
    outcome = Outcome.UPDATED_ATTACHMENTS if changed else Outcome.DUPLICATE
    # The submission itself is accepted (a device gets its 201); the files that differed are in the
    # conflict named here, for callers that report them (the API's late attachment upload does).
    return IngestResult(
        outcome,
        RECEIVED,
        session,
        submission_pk,
        version_pk,
        conflict=kept.conflict if kept else None,
        conflict_reason=kept.conflict_reason if kept else None,
        expected=names,
        missing=missing,
        instance_id=parsed.instance_id,
        differing=sorted(differing),
    )


def _keep_conflict(
    writer: Writer,
    project_id: int,
    target: FormTarget,
    parsed: ParsedSubmission,
    files: Mapping[str, StagedBlob],
    provenance: Provenance,
    reason: ConflictReason,
) -> IngestResult:
    """Keep a payload that cannot be applied, with its files; the same payload again is kept once."""
    session = writer.session
    _add_blob_rows(writer, files)
    conflict = session.scalar(
        select(Conflict).where(
            Conflict.form_id == target.form_id,
            Conflict.instance_id == parsed.instance_id,
            Conflict.sha256 == parsed.sha256,
        )
    )
    created = conflict is None
    if conflict is None:
        conflict = Conflict(
            form_id=target.form_id,
            instance_id=parsed.instance_id,
            deprecated_id=parsed.deprecated_id,
            reason=str(reason),
            xml=parsed.xml,
            sha256=parsed.sha256,
            **provenance.columns(),
        )
        session.add(conflict)
        session.flush()
    held: dict[str, str] = {
        name: blob
        for name, blob in session.execute(
            select(ConflictAttachment.name, ConflictAttachment.blob_sha256).where(
                ConflictAttachment.conflict_id == conflict.id
            )
        )
    }
    added = []
    for name, staged in sorted(files.items()):
        if held.get(name) == staged.sha256 or staged.sha256 in held.values():
            continue
        kept_as = name if name not in held else f"{name}~{staged.sha256[:12]}"[:255]
        session.add(ConflictAttachment(conflict_id=conflict.id, name=kept_as, blob_sha256=staged.sha256))
        held[kept_as] = staged.sha256
        added.append(kept_as)
    if added:
        session.flush()
    if created or added:
        audit.record(
            session,
            "submission.conflict",
            actor=provenance.actor,
            project_id=project_id,
            target_type="conflict",
            target_id=conflict.id,
            formId=target.xml_form_id,
            instanceId=parsed.instance_id,
            deprecatedId=parsed.deprecated_id,
            reason=str(reason),
            sha256=parsed.sha256,
            attachments=added,
            source=str(provenance.source),
            deviceId=provenance.device_id,
            new=created,
        )
    existing = session.scalar(
        select(Submission.id)
        .join(SubmissionVersion, SubmissionVersion.submission_id == Submission.id)
        .where(
            SubmissionVersion.form_id == target.form_id,
            SubmissionVersion.instance_id.in_(
                [parsed.instance_id, parsed.deprecated_id or parsed.instance_id]
            ),
        )
        .limit(1)
    )
    message = CONFLICT_MESSAGES.get(reason, CONFLICT_MESSAGES[ConflictReason.INSTANCE_ID_TAKEN])
    return IngestResult(
        Outcome.CONFLICT,
        message,
        session,
        submission_id=existing,
        conflict=conflict,
        conflict_reason=reason,
        expected=sorted(held),
        instance_id=parsed.instance_id,
    )
