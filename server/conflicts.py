"""Kept conflicts and the coordinator's decision about each (the console and ``/v1/projects/{p}/conflicts``).

Ingest keeps every payload it cannot apply as a :class:`~server.models.Conflict` (see
:mod:`server.ingest.reconcile`). A coordinator then decides, once per conflict:

- ``keep-stored``: the stored submission stays as it is; the payload stays kept, marked decided.
- ``new-version``: the payload becomes the newest version of the stored submission, through the one
  ingest path as an edit (its ``instanceID`` renewed, its ``deprecatedID`` naming the current version),
  with its files. A payload whose submission this server never had becomes a new submission.
- ``set-aside``: neither applied nor accepted; kept for the record.

Nothing is deleted: the conflict row, its XML and its files stay. The decision, who took it and when are
on the row and in the audit log (``submission.conflict.decide``).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, errors, safe_xml
from server.db import Writer
from server.ingest import ingest
from server.ingest.reconcile import Outcome
from server.models import Conflict, Form, Project, Source, Submission, SubmissionVersion, User, utcnow


class Decision(enum.StrEnum):
    KEEP_STORED = "keep-stored"
    NEW_VERSION = "new-version"
    SET_ASIDE = "set-aside"


AUDIT_ACTION = "submission.conflict.decide"


def decision_of(conflict: Conflict) -> str | None:
    """The decision recorded on a conflict (``resolution`` is ``decision`` or ``decision:instanceID``)."""
    return conflict.resolution.split(":", 1)[0] if conflict.resolution else None


def project_conflicts(
    session: Session, project_id: int, *, open_only: bool = False
) -> list[tuple[Conflict, Form]]:
    stmt = (
        select(Conflict, Form)
        .join(Form, Form.id == Conflict.form_id)
        .where(Form.project_id == project_id, Form.deleted_at.is_(None))
        .order_by(Conflict.resolved_at.is_not(None), Conflict.received_at.desc(), Conflict.id.desc())
    )
    if open_only:
        stmt = stmt.where(Conflict.resolved_at.is_(None))
    return [(c, f) for c, f in session.execute(stmt).all()]


def find_conflict(session: Session, project_id: int, conflict_id: int) -> tuple[Conflict, Form]:
    found = session.execute(
        select(Conflict, Form)
        .join(Form, Form.id == Conflict.form_id)
        .where(Conflict.id == conflict_id, Form.project_id == project_id)
    ).first()
    if found is None:
        raise errors.not_found(f"There is no conflict {conflict_id} in this project.")
    return found[0], found[1]


def stored_submission(session: Session, conflict: Conflict) -> Submission | None:
    """The submission the payload collides with: the one holding its instanceID, else (an edit) the one
    holding the version it names as deprecated."""
    for instance_id in (conflict.instance_id, conflict.deprecated_id):
        if not instance_id:
            continue
        found = session.scalar(
            select(Submission)
            .join(SubmissionVersion, SubmissionVersion.submission_id == Submission.id)
            .where(
                SubmissionVersion.form_id == conflict.form_id,
                SubmissionVersion.instance_id == instance_id,
                Submission.deleted_at.is_(None),
            )
            .limit(1)
        )
        if found is not None:
            return found
    return None


def _set_meta(root: etree._Element, instance_id: str, deprecated_id: str | None) -> None:
    """Set meta/instanceID and meta/deprecatedID (in the namespace the payload uses for its meta)."""
    meta = next((el for el in root if isinstance(el.tag, str) and etree.QName(el).localname == "meta"), None)
    if meta is None:
        raise errors.unprocessable("This payload has no <meta> block; it cannot become a version.")
    children = {etree.QName(el).localname: el for el in meta if isinstance(el.tag, str)}
    ns = (
        etree.QName(children["instanceID"]).namespace
        if "instanceID" in children
        else etree.QName(meta).namespace
    )
    tag = (lambda name: f"{{{ns}}}{name}") if ns else (lambda name: name)
    found = children.get("instanceID")
    if found is None:
        found = etree.SubElement(meta, tag("instanceID"))
    found.text = instance_id
    old = children.get("deprecatedID")
    if deprecated_id is None:
        if old is not None:
            meta.remove(old)
        return
    if old is None:
        old = etree.SubElement(meta, tag("deprecatedID"))
    old.text = deprecated_id


def as_new_version_xml(conflict: Conflict, current: SubmissionVersion | None) -> bytes:
    """The payload rewritten as an edit of ``current`` (or, with no stored submission, as a new one)."""
    root = safe_xml.parse(conflict.xml, keep_comments=True)
    if current is None:
        _set_meta(root, conflict.instance_id, None)
    else:
        _set_meta(root, f"uuid:{uuid.uuid4()}", current.instance_id)
    return etree.tostring(root, xml_declaration=False, encoding="utf-8")


@dataclass(frozen=True)
class Decided:
    conflict_id: int
    decision: Decision
    instance_id: str | None = None  # the submission the payload became a version of (new-version)


def decide(
    writer: Writer,
    project: Project,
    conflict: Conflict,
    decision: str,
    user: User,
    *,
    note: str = "",
    via: str,
) -> Decided:
    """Record the decision (in the caller's write transaction); ``new-version`` ingests the payload."""
    try:
        chosen = Decision(decision)
    except ValueError:
        raise errors.bad_request(
            f"Unknown decision {decision!r}: use keep-stored, new-version or set-aside.", field="decision"
        ) from None
    # Two coordinators deciding at once: the second waits for the first, then sees its decision.
    writer.session.refresh(conflict, with_for_update=True)
    if conflict.resolved_at is not None:
        raise errors.conflict(
            f"This conflict was already decided ({decision_of(conflict)}).", decision=decision_of(conflict)
        )
    session = writer.session
    target = stored_submission(session, conflict)
    resolution: str = chosen.value
    became: str | None = None
    if chosen is Decision.NEW_VERSION:
        became = _take(writer, project, conflict, target, user)
        resolution = f"{chosen.value}:{became}"
    conflict.resolved_at = utcnow()
    conflict.resolved_by_id = user.id
    conflict.resolution = resolution
    form = session.get(Form, conflict.form_id)
    audit.record(
        session,
        AUDIT_ACTION,
        actor=user,
        project_id=project.id,
        target_type="conflict",
        target_id=conflict.id,
        decision=chosen.value,
        formId=form.xml_form_id if form else None,
        instanceId=conflict.instance_id,
        storedInstanceId=target.instance_id if target else None,
        newVersionOf=became,
        note=note[:2000] or None,
        via=via,
    )
    return Decided(conflict.id, chosen, became)


def _take(writer: Writer, project: Project, conflict: Conflict, target: Submission | None, user: User) -> str:
    current = target.current_version if target else None
    xml = as_new_version_xml(conflict, current)
    # The kept files, by the name the payload gives them (a second file of one name was kept as
    # "name~sha"; it goes back under its own name, the one the payload's XML refers to).
    files = [
        (a.name.split("~", 1)[0], writer.staging.store.open(a.blob_sha256)) for a in conflict.attachments
    ]
    try:
        result = ingest(
            writer,
            project=project,
            xml_bytes=xml,
            attachments=files,
            source=Source.API,
            user=user,
            source_detail=f"conflict {conflict.id}",
        )
    finally:
        for _name, fh in files:
            fh.close()
    if result.outcome not in (Outcome.EDITED, Outcome.CREATED):
        raise errors.conflict(
            "The payload could not become a version (the submission changed meanwhile); "
            "reload and decide again.",
            outcome=str(result.outcome),
        )
    sub = result.submission
    assert sub is not None
    return sub.instance_id
