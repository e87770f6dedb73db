"""The audit log: who did what to which object. Written in the same transaction as the change, and
read back (newest first, filtered as ODK Central filters ``GET /v1/audits``) by the API, the CLI and the
console. Rows are append-only: migration 0009 makes the database refuse UPDATE and DELETE on them.

Action names follow ODK Central's where Central has the same event (``user.session.create``,
``form.update.publish``, ``user.assignment.create``, ...); the README lists every action Sarhad writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select, true
from sqlalchemy.orm import Session

from server.models import AppUser, AuditEvent, User

# Central's category filters for ``?action=``: each stands for the actions of one kind. Sarhad's own
# actions of the same kind are in them too (e.g. ``user.session.failure`` under ``user``).
_VERBOSE = (
    "submission.create",
    "submission.update",
    "submission.update.version",
    "submission.attachment.update",
    "submission.attachment",
    "submission.delete",
    "submission.restore",
    "submission.comment",
    "entity.create",
    "entity.update.version",
    "entity.update.resolve",
    "entity.delete",
    "entity.restore",
    "sync.batch",
    "sync.blob",
    "backup",
    "analytics",
)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "user": (
        "user.create",
        "user.update",
        "user.delete",
        "user.assignment.create",
        "user.assignment.delete",
        "user.session.create",
        "user.session.failure",
        "user.session.lock",
        "user.session.unlock",
    ),
    "field_key": (
        "field_key.create",
        "field_key.assignment.create",
        "field_key.assignment.delete",
        "field_key.session.end",
        "field_key.session.rotate",
        "field_key.session.lock",
        "field_key.delete",
    ),
    "project": ("project.create", "project.update", "project.delete"),
    "form": (
        "form.create",
        "form.update",
        "form.delete",
        "form.attachment.update",
        "form.submission.export",
        "form.submission.report",
        "form.submission.decrypt",
        "form.update.draft.set",
        "form.update.draft.delete",
        "form.update.publish",
    ),
    "submission": (
        "submission.create",
        "submission.update",
        "submission.update.version",
        "submission.review",
        "submission.comment",
        "submission.attachment",
        "submission.attachment.update",
        "submission.conflict",
        "submission.delete",
        "submission.restore",
    ),
    "dataset": ("dataset.create", "dataset.update", "dataset.property.create"),
    "entity": (
        "entity.create",
        "entity.update.version",
        "entity.update.resolve",
        "entity.delete",
        "entity.restore",
    ),
}
NONVERBOSE = "nonverbose"


def action_condition(action: str) -> ColumnElement[bool]:
    """``?action=``: a category (``user``, ``form``, ...), ``nonverbose`` (all but the per-record
    events), or one exact action."""
    if action == NONVERBOSE:
        return AuditEvent.action.not_in(_VERBOSE)
    if action in CATEGORIES:
        return AuditEvent.action.in_(CATEGORIES[action])
    return AuditEvent.action == action


@dataclass(frozen=True)
class AuditQuery:
    """What to read: Central's ``action``, ``start`` (inclusive) and ``end`` (exclusive), plus Sarhad's
    own narrowing by actor (a web user) and by the object acted on."""

    action: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    actor_user_id: int | None = None
    # (target_type, target_id) pairs: events about any of these objects
    targets: Sequence[tuple[str, str]] = ()

    def statement(self) -> Select[tuple[AuditEvent]]:
        conditions: list[ColumnElement[bool]] = [true()]
        if self.action:
            conditions.append(action_condition(self.action))
        if self.start is not None:
            conditions.append(AuditEvent.at >= self.start)
        if self.end is not None:
            conditions.append(AuditEvent.at < self.end)
        if self.actor_user_id is not None:
            conditions.append(AuditEvent.actor_user_id == self.actor_user_id)
        if self.targets:
            conditions.append(
                or_(
                    *(
                        and_(AuditEvent.target_type == kind, AuditEvent.target_id == ident)
                        for kind, ident in self.targets
                    )
                )
            )
        return select(AuditEvent).where(and_(*conditions))


def find(
    session: Session, query: AuditQuery, *, limit: int | None = None, offset: int = 0
) -> list[AuditEvent]:
    """The events ``query`` selects, newest first (as Central orders them), one page of them."""
    stmt = query.statement().order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def record(
    session: Session,
    action: str,
    *,
    actor: User | AppUser | None = None,
    project_id: int | None = None,
    target_type: str | None = None,
    target_id: object = None,
    **details: Any,
) -> None:
    session.add(
        AuditEvent(
            action=action,
            actor_user_id=actor.id if isinstance(actor, User) else None,
            actor_app_user_id=actor.id if isinstance(actor, AppUser) else None,
            project_id=project_id,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            details=details,
        )
    )
