"""Datasets: what analysts download. read → clean → redact → export.

- :func:`iter_submissions`: the submissions of a form as :class:`SubmissionRecord`, streamed from the
  database (never all in memory), filtered by :class:`Filters`.
- :mod:`.schema`: the fields of a form merged across versions, with labels and choices in en/tg/ru.
- :mod:`.reader`: one submission's XML → its root row and repeat rows (ODK Central's KEY/PARENT_KEY and
  OData ids): the one walk every format reads through.
- :mod:`.clean`: values typed by bind type, whitespace normalised, required/constraint checks flagged.
- :mod:`.redact`: :func:`access_for` a user and project, :func:`redact_value` for every value.
- :mod:`.csv_zip`, :mod:`.xlsx`, :mod:`.jsonl`, :mod:`.geojson`: the file formats; :mod:`.codebook`.

Which submissions a dataset holds (``Filters`` defaults): the current version of each submission; rejected
and deleted submissions left out unless asked; submissions from test app users (``AppUser.is_test``) or
test devices (``Project.test_device_ids``) left out unless asked; optionally only those received in
[since, until) or in given review states.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from server import errors
from server.datasets.redact import Access, access_for, redact_value
from server.ingest.parse import encrypted_xml_file
from server.models import (
    AppUser,
    Form,
    FormVersion,
    Project,
    ReviewState,
    Submission,
    SubmissionAttachment,
    SubmissionVersion,
    User,
)

STREAM_BATCH = 1000  # rows per server-side fetch: fewer round trips, still a few MB at most

# Central's order for every listing and export: newest received first; the id breaks ties so that equal
# times come out in the same order every time (PostgreSQL promises no order among equal keys).
NEWEST_FIRST = (Submission.created_at.desc(), Submission.id.desc())

__all__ = [
    "NEWEST_FIRST",
    "Access",
    "AttachmentRecord",
    "Filters",
    "SubmissionRecord",
    "access_for",
    "iter_attachments",
    "iter_submissions",
    "parse_bound",
    "records",
    "redact_value",
    "submissions_query",
]


@dataclass(frozen=True)
class Filters:
    """Which submissions a dataset holds. ``until`` is exclusive; datetimes are aware (UTC)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    review_states: tuple[str, ...] = ()
    include_rejected: bool = False
    include_deleted: bool = False
    include_test: bool = False
    instance_ids: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        unknown = [s for s in self.review_states if s not in set(ReviewState)]
        if unknown:
            raise errors.bad_request(
                f"Unknown review state {unknown[0]!r}: use {', '.join(s.value for s in ReviewState)}.",
                field="reviewState",
            )

    def describe(self) -> dict[str, Any]:
        """For the audit log and the export's notes."""
        out = asdict(self)
        for key in ("since", "until"):
            out[key] = out[key].isoformat() if out[key] else None
        out["review_states"] = list(self.review_states)
        out["instance_ids"] = list(self.instance_ids)
        return out


def parse_bound(text: str | None, *, end: bool = False, name: str = "date") -> dt.datetime | None:
    """``2026-05-01`` or an ISO datetime → aware UTC datetime. A bare date as ``end`` means the end of
    that day (so ``--until 2026-05-31`` includes the 31st)."""
    if text is None or not str(text).strip():
        return None
    raw = str(text).strip()
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end else start
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise errors.bad_request(
            f"{raw!r} is not a date (YYYY-MM-DD) or an ISO 8601 date and time.", field=name
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass
class SubmissionRecord:
    """The current version of one submission and what Central's exports say about it."""

    id: int
    instance_id: str  # the logical id (the first version's instanceID): Central's KEY and __id
    created_at: dt.datetime
    updated_at: dt.datetime | None
    review_state: str
    deleted_at: dt.datetime | None
    version_id: int
    version_instance_id: str
    xml: str
    encrypted: bool
    form_version: str
    device_id: str | None
    submitter_id: int | None
    submitter_name: str | None
    app_user_id: int | None
    user_id: int | None
    attachments_present: int
    attachments_expected: int
    edits: int
    # An encrypted one whose encrypted data file (submission.xml.enc) has not arrived yet: Central's
    # "missing encrypted form data" rather than "not decrypted".
    encrypted_data_missing: bool = False


def submissions_query(form: Form, project: Project, filters: Filters) -> Select[Any]:
    """The statement behind :func:`iter_submissions` (one row per submission, its current version, newest
    first), for callers that add conditions of their own (OData pushes ``$filter`` clauses into it)."""
    current = aliased(SubmissionVersion)
    other = aliased(SubmissionVersion)
    present = (
        select(func.count())
        .select_from(SubmissionAttachment)
        .where(SubmissionAttachment.version_id == current.id, SubmissionAttachment.blob_sha256.is_not(None))
        .scalar_subquery()
    )
    expected = (
        select(func.count())
        .select_from(SubmissionAttachment)
        .where(SubmissionAttachment.version_id == current.id)
        .scalar_subquery()
    )
    versions = (
        select(func.count()).select_from(other).where(other.submission_id == Submission.id).scalar_subquery()
    )
    stmt = (
        select(
            Submission.id,
            Submission.instance_id,
            Submission.created_at,
            Submission.updated_at,
            Submission.review_state,
            Submission.deleted_at,
            current.id,
            current.instance_id,
            current.xml,
            current.encrypted,
            current.form_version_id,
            current.device_id,
            current.app_user_id,
            current.user_id,
            AppUser.display_name,
            User.display_name,
            present,
            expected,
            versions,
        )
        .join(current, current.id == Submission.current_version_id)
        .outerjoin(AppUser, AppUser.id == current.app_user_id)
        .outerjoin(User, User.id == current.user_id)
        .where(Submission.form_id == form.id)
        .order_by(*NEWEST_FIRST)
    )
    return _filtered(stmt, current, project, filters)


def _filtered(stmt: Select[Any], current: Any, project: Project, filters: Filters) -> Select[Any]:
    """The filters of a dataset, on a query of Submission joined with its current version and AppUser."""
    if not filters.include_deleted:
        stmt = stmt.where(Submission.deleted_at.is_(None))
    if filters.review_states:
        states = list(filters.review_states)
        stmt = stmt.where(Submission.review_state.in_(states))
    if not filters.include_rejected and ReviewState.REJECTED not in filters.review_states:
        stmt = stmt.where(Submission.review_state != ReviewState.REJECTED)
    if not filters.include_test:
        stmt = stmt.where(or_(current.app_user_id.is_(None), AppUser.is_test.is_(False)))
        test_devices = [str(d) for d in (project.test_device_ids or [])]
        if test_devices:
            stmt = stmt.where(or_(current.device_id.is_(None), current.device_id.not_in(test_devices)))
    if filters.since is not None:
        stmt = stmt.where(Submission.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Submission.created_at < filters.until)
    if filters.instance_ids:
        stmt = stmt.where(and_(Submission.instance_id.in_(list(filters.instance_ids))))
    return stmt


def _stream(session: Session, stmt: Select[Any]) -> Any:
    """Rows without holding them all: PostgreSQL needs a server-side cursor for that; SQLite's cursor
    already steps through the result row by row (and is faster without SQLAlchemy's row buffering)."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        return connection.execute(stmt)
    return connection.execute(stmt.execution_options(yield_per=STREAM_BATCH))


def iter_submissions(
    session: Session, form: Form, filters: Filters | None = None
) -> Iterator[SubmissionRecord]:
    """Stream the current versions of ``form``'s submissions, newest first, as ``filters`` says.

    Rows come from a server-side cursor (PostgreSQL) or SQLite's lazy cursor, ``STREAM_BATCH`` at a time:
    memory stays flat whatever the number of submissions. Keep ``session`` open while iterating.
    """
    filters = filters or Filters()
    project = session.get(Project, form.project_id)
    assert project is not None
    return records(session, form, submissions_query(form, project, filters))


def records(session: Session, form: Form, stmt: Select[Any]) -> Iterator[SubmissionRecord]:
    """The rows of :func:`submissions_query` (as given, or with conditions added) as records, streamed."""
    version_names = dict(
        session.execute(
            select(FormVersion.id, FormVersion.version).where(FormVersion.form_id == form.id)
        ).all()
    )
    for row in _stream(session, stmt):
        (sid, iid, created, updated, state, deleted_at, vid, viid, xml, enc, fvid, device, app_user_id,
         user_id, app_user_name, user_name, present, expected, versions) = row  # fmt: skip
        yield SubmissionRecord(
            id=sid,
            instance_id=iid,
            created_at=created,
            updated_at=updated,
            review_state=state,
            deleted_at=deleted_at,
            version_id=vid,
            version_instance_id=viid,
            xml=xml,
            encrypted=bool(enc),
            form_version=version_names.get(fvid, ""),
            device_id=device,
            submitter_id=app_user_id if app_user_id is not None else user_id,
            submitter_name=app_user_name if app_user_id is not None else user_name,
            app_user_id=app_user_id,
            user_id=user_id,
            attachments_present=int(present or 0),
            attachments_expected=int(expected or 0),
            edits=max(int(versions or 1) - 1, 0),
            encrypted_data_missing=bool(enc) and _encrypted_data_missing(session, vid, xml),
        )


@dataclass
class AttachmentRecord:
    version_id: int
    instance_id: str
    name: str
    blob_sha256: str
    encrypted: bool = False  # a file of an encrypted envelope (``<name>.enc``)


def iter_attachments(
    session: Session, form: Form, filters: Filters | None = None
) -> Iterator[AttachmentRecord]:
    """Received files of the current versions of the submissions ``filters`` selects (streamed).

    An encrypted submission's own data file (its envelope's ``encryptedXmlFile``, ``submission.xml.enc``)
    is not one of them: as in Central, only the attachments are listed."""
    filters = filters or Filters()
    project = session.get(Project, form.project_id)
    assert project is not None
    current = aliased(SubmissionVersion)
    stmt = (
        select(
            current.id,
            Submission.instance_id,
            SubmissionAttachment.name,
            SubmissionAttachment.blob_sha256,
            current.encrypted,
        )
        .select_from(Submission)
        .join(current, current.id == Submission.current_version_id)
        .outerjoin(AppUser, AppUser.id == current.app_user_id)
        .join(SubmissionAttachment, SubmissionAttachment.version_id == current.id)
        .where(Submission.form_id == form.id, SubmissionAttachment.blob_sha256.is_not(None))
        .order_by(*NEWEST_FIRST, SubmissionAttachment.name)
    )
    stmt = _filtered(stmt, current, project, filters)
    envelope_files: dict[int, str | None] = {}
    for vid, iid, name, sha, encrypted in _stream(session, stmt):
        if encrypted:
            if vid not in envelope_files:
                envelope_files[vid] = _encrypted_xml_file(session, vid)
            if name == envelope_files[vid]:
                continue
        yield AttachmentRecord(vid, iid, name, sha, bool(encrypted))


def _encrypted_data_missing(session: Session, version_id: int, envelope: str) -> bool:
    """Whether an encrypted version still lacks its encrypted data file (one query, encrypted ones only)."""
    name = encrypted_xml_file(envelope)
    if name is None:
        return True
    sha = session.scalar(
        select(SubmissionAttachment.blob_sha256).where(
            SubmissionAttachment.version_id == version_id, SubmissionAttachment.name == name
        )
    )
    return sha is None


def _encrypted_xml_file(session: Session, version_id: int) -> str | None:
    """The name an encrypted envelope gives its submission data (``encryptedXmlFile``)."""
    envelope = session.scalar(select(SubmissionVersion.xml).where(SubmissionVersion.id == version_id))
    return encrypted_xml_file(envelope or "")
