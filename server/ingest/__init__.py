"""The one ingest path: every submission (Collect, the /v1 API, hubs, folders, bundles) ends here.

``ingest(writer, project=..., xml_bytes=..., attachments=[(name, staged blob or stream)], ...)`` parses the
XML (:mod:`server.ingest.parse`), finds the form version it names and decides what the payload is — new,
a resend, an edit or a conflict — in :mod:`server.ingest.reconcile`. It writes in the caller's write
transaction (``Database.write()`` / ``@db.write_request``), which commits and only then publishes the
staged files: a caller acknowledges a submission only after that commit.

A conflict is *returned* (``outcome == Outcome.CONFLICT``, ``status == 409``), not raised: the payload is
kept in the same transaction, so the caller must let it commit and then answer 409. Problems that leave
nothing to keep (unknown form, malformed XML...) are raised as :class:`server.errors.Problem`.

On PostgreSQL two identical resends at the same moment can both find nothing and both insert; the
second then fails on a unique constraint, and is retried from a savepoint (it now sees the first one's
rows and becomes a resend). SQLite serialises writers with ``BEGIN IMMEDIATE``, so the race cannot occur.

Callers with many small concurrent writes (the OpenRosa route) run ``ingest`` through
:mod:`server.ingest.group_commit`, so that one commit (one fsync) serves several submissions.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import BinaryIO

from sqlalchemy.exc import IntegrityError

from server import errors
from server.blobs import StagedBlob
from server.db import Writer
from server.entities.from_submissions import Context, Event, apply_submission, entity_form
from server.ingest.parse import ParsedSubmission, check_attachment_name, parse_submission
from server.ingest.reconcile import (
    ConflictReason,
    FormTarget,
    IngestResult,
    Outcome,
    Provenance,
    find_target,
    reconcile,
    target_of_version,
)
from server.models import AppUser, Project, Source, SubmissionVersion, User, utcnow

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 4
DEFAULT_MAX_XML_BYTES = 10 * 1024 * 1024

Attachment = tuple[str, StagedBlob | BinaryIO]


def _max_xml_bytes() -> int:
    from flask import has_app_context

    from server.config import settings

    if has_app_context():
        return settings().max_xml_bytes
    return DEFAULT_MAX_XML_BYTES


def stage_attachments(writer: Writer, attachments: Iterable[Attachment]) -> dict[str, StagedBlob]:
    """Every file by name, staged. A stream is staged in the writer's staging (published after the commit);
    a ``StagedBlob`` must already sit in a staging the caller publishes once this transaction commits
    (``writer.staging`` or its own, as the OpenRosa route does to keep file copies out of the transaction).
    The same name twice must be the same bytes."""
    files: dict[str, StagedBlob] = {}
    for name, item in attachments:
        check_attachment_name(name)
        staged = item if isinstance(item, StagedBlob) else writer.staging.add_stream(item)
        if name in files and files[name].sha256 != staged.sha256:
            raise errors.bad_request(f"Two different files named {name!r} came in one request.", name=name)
        files[name] = staged
    return files


def ingest(
    writer: Writer,
    *,
    project: Project | int,
    xml_bytes: bytes,
    attachments: Iterable[Attachment] = (),
    incomplete: bool = False,
    source: Source = Source.DEVICE,
    app_user: AppUser | None = None,
    user: User | None = None,
    device_id: str | None = None,
    user_agent: str | None = None,
    source_detail: str | None = None,
    received_at: dt.datetime | None = None,
    max_xml_bytes: int | None = None,
    parsed: ParsedSubmission | None = None,
    target: FormTarget | None = None,
) -> IngestResult:
    """Store one submission payload (or part of a split upload) and say what it was.

    ``incomplete`` is Collect's ``*isIncomplete*`` (more parts follow with the same XML). It changes
    nothing in what is stored: every part is reconciled the same way and its files merge into the one
    version; the result's ``missing`` says what is still awaited. ``parsed`` spares a second parse when
    the caller has already parsed ``xml_bytes`` (it must be the parse of those very bytes); ``target``
    likewise spares the form lookup when the caller has done :func:`find_target` for these bytes.
    """
    project_id = project if isinstance(project, int) else project.id
    if parsed is None or parsed.xml_bytes is not xml_bytes:
        parsed = parse_submission(xml_bytes, max_xml_bytes or _max_xml_bytes())
    files = stage_attachments(writer, attachments)
    provenance = Provenance(
        source=Source(source),
        source_detail=source_detail,
        device_id=device_id,
        user_agent=user_agent,
        app_user=app_user,
        user=user,
        received_at=received_at or utcnow(),
    )
    session = writer.session
    if target is None:
        target = find_target(session, project_id, parsed, provenance.source)
    if session.get_bind().dialect.name == "sqlite":
        # BEGIN IMMEDIATE: no other writer can interleave, so no unique-constraint race to retry.
        result = reconcile(writer, project_id, target, parsed, files, provenance)
    else:
        result = _reconcile_with_retry(writer, project_id, target, parsed, files, provenance)
    if result.outcome in (Outcome.CREATED, Outcome.EDITED):
        _apply_entities(writer, project_id, target, result, provenance)
    if incomplete and result.accepted:
        result.message = f"{result.message} (part of a larger submission: send the rest)"
    return result


def _apply_entities(
    writer: Writer, project_id: int, target: FormTarget, result: IngestResult, provenance: Provenance
) -> None:
    """The entities a new submission or an edit creates or updates, in this same transaction."""
    if entity_form(writer.session, target.form_version_id, target.xform_sha256 or None) is None:
        return  # most forms declare none: no query beyond the first submission of a version
    version = result.version
    assert version is not None
    event = Event.RECEIVED if result.outcome is Outcome.CREATED else Event.EDITED
    context = Context(project_id, version, provenance.actor, provenance.user_agent)
    apply_submission(writer.session, context, target.xml_form_id, event)


def add_late_file(
    writer: Writer,
    *,
    project_id: int,
    version: SubmissionVersion,
    name: str,
    stream: BinaryIO,
    source: Source = Source.API,
    user: User | None = None,
    user_agent: str | None = None,
) -> IngestResult:
    """A file sent on its own for a stored version (``POST .../submissions/{id}/attachments/{name}``).

    It is ingested as a resend of that version's XML with this one file, so the usual rule decides:
    a file not received yet fills its place; the same bytes again change nothing; other bytes for a file
    already held never replace it: both are kept and the new one goes to the conflict store
    (``result.differing`` names it, ``result.conflict`` holds it). A closed form still takes the files of
    submissions it accepted earlier.
    """
    xml_bytes = version.xml.encode("utf-8")  # stored as received, which parse_submission made sure is UTF-8
    parsed = parse_submission(xml_bytes, max(len(xml_bytes), 1))
    files = stage_attachments(writer, [(name, stream)])
    provenance = Provenance(source=source, user=user, user_agent=user_agent, received_at=utcnow())
    target = target_of_version(writer.session, version)
    if writer.session.get_bind().dialect.name == "sqlite":
        return reconcile(writer, project_id, target, parsed, files, provenance)
    return _reconcile_with_retry(writer, project_id, target, parsed, files, provenance)


def _reconcile_with_retry(
    writer: Writer,
    project_id: int,
    target: FormTarget,
    parsed: ParsedSubmission,
    files: dict[str, StagedBlob],
    provenance: Provenance,
) -> IngestResult:
    session = writer.session
    for attempt in range(1, MAX_ATTEMPTS + 1):
        savepoint = session.begin_nested()
        try:
            result = reconcile(writer, project_id, target, parsed, files, provenance)
            savepoint.commit()
            return result
        except IntegrityError:
            # Another transaction committed the same submission, blob or conflict first (it is committed:
            # PostgreSQL waited for it before failing ours). Read again and decide again.
            savepoint.rollback()
            log.info(
                "ingest of %s %s raced another writer (attempt %d); deciding again",
                parsed.form_id,
                parsed.instance_id,
                attempt,
            )
            if attempt == MAX_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


__all__ = [
    "ConflictReason",
    "FormTarget",
    "IngestResult",
    "Outcome",
    "ParsedSubmission",
    "Provenance",
    "add_late_file",
    "find_target",
    "ingest",
    "parse_submission",
    "stage_attachments",
]
