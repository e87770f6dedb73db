"""The audit log: who did what to which object. Written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from server.models import AppUser, AuditEvent, User


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
