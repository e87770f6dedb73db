"""The audit log page, for site administrators: every event newest first, filtered by action (or one of
Central's categories), by who did it and by date (Tajikistan's calendar days), 50 a page. It reads
through ``server.audit.find`` as ``GET /v1/audits`` and ``sarhad audit`` do."""

from __future__ import annotations

import json
from typing import Any

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from server import audit, auth, db
from server.console import console
from server.console.pages import day_start
from server.console.session import require_signed_in
from server.models import AppUser, AuditEvent, User
from server.users import list_users

PAGE_SIZE = 50


def categories() -> list[tuple[str, str]]:
    return [
        ("", _("Everything")),
        (audit.NONVERBOSE, _("Everything but single records")),
        ("user", _("Users, roles and sign-ins")),
        ("field_key", _("Devices")),
        ("project", _("Projects")),
        ("form", _("Forms, exports and reports")),
        ("submission", _("Submissions")),
        ("dataset", _("Entity lists")),
        ("entity", _("Entities")),
    ]


def details_text(details: dict[str, Any] | None) -> str:
    return json.dumps(details, ensure_ascii=False, sort_keys=True) if details else ""


def actor_names(events: list[AuditEvent]) -> dict[tuple[str, int], str]:
    """Display names of the web users and devices that acted in ``events``."""
    session = db.session()
    user_ids = {e.actor_user_id for e in events if e.actor_user_id}
    device_ids = {e.actor_app_user_id for e in events if e.actor_app_user_id}
    names = {
        ("user", u.id): u.display_name for u in session.scalars(select(User).where(User.id.in_(user_ids)))
    }
    names |= {
        ("device", d.id): d.display_name
        for d in session.scalars(select(AppUser).where(AppUser.id.in_(device_ids)))
    }
    return names


def actor_of(event: AuditEvent, names: dict[tuple[str, int], str]) -> str:
    if event.actor_user_id:
        return names.get(("user", event.actor_user_id), str(event.actor_user_id))
    if event.actor_app_user_id:
        return _(
            "device %(name)s", name=names.get(("device", event.actor_app_user_id), event.actor_app_user_id)
        )
    return "—"


@console.get("/audit")
def audit_page() -> ResponseReturnValue:
    require_signed_in()
    auth.require_site_admin()
    args = request.args
    action = args.get("action", "").strip()
    actor = args.get("actor", type=int)
    page = max(args.get("page", 1, type=int), 1)
    query = audit.AuditQuery(
        action=action or None,
        start=day_start(args.get("from")),
        end=day_start(args.get("to"), next_day=True),
        actor_user_id=actor,
    )
    session = db.session()
    found = audit.find(session, query, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    more = len(found) > PAGE_SIZE
    events = found[:PAGE_SIZE]
    names = actor_names(events)
    kept = {k: v for k, v in args.items() if k != "page" and v}
    return render_template(
        "audit.html",
        rows=[(e, actor_of(e, names), details_text(e.details)) for e in events],
        categories=categories(),
        known_category=action in dict(categories()),
        users=list_users(session),
        filters={"action": action, "actor": actor, "from": args.get("from", ""), "to": args.get("to", "")},
        page=page,
        previous_args={**kept, "page": page - 1} if page > 1 else None,
        next_args={**kept, "page": page + 1} if more else None,
    )
