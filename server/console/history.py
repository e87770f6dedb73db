"""A submission's history for its console page: each version (the original and every edit), what changed
from the version before it field by field (labelled, as the requester may see the answers), and the
submission's audit trail.

Every version is read through the one reader (``server.datasets.reader.read``) with the schema of the
form's current version and the submission's first instanceID, so that repeat rows keep the same keys
from one version to the next and a repeat answer is compared with the same repeat instance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit
from server.api.submissions import FormAccess, shown_identity
from server.console.audit_log import actor_names, details_text
from server.datasets.reader import UnreadableXml, read
from server.datasets.schema import Field, FormSchema
from server.models import AppUser, AuditEvent, Conflict, Submission, SubmissionVersion, User

# (row key, field path) → raw answer: the answers of one version, repeats included.
Answers = dict[tuple[str, str], str]
Shown = Callable[[Field, str | None], str]


@dataclass
class Change:
    label: str
    before: str
    after: str


@dataclass
class VersionEntry:
    number: int
    version: SubmissionVersion
    by: str
    current: bool
    unreadable: bool = False
    changes: list[Change] = field(default_factory=list)


def _answers(schema: FormSchema, version: SubmissionVersion, instance_id: str) -> Answers | None:
    try:
        rows = list(read(version.xml, schema.by_rel, instance_id))
    except UnreadableXml:
        return None
    found: Answers = {}
    for row in rows:
        for rel, value in row.values.items():
            if not rel.startswith("/meta/"):
                found[(row.key, rel)] = value
    return found


def _label(schema: FormSchema, key: str, rel: str, instance_id: str, lang: str) -> str:
    """The question's label; inside a repeat, followed by which instance (``Household member — 2``)."""
    question = schema.by_rel.get(rel)
    label = (question.label(lang) or question.name) if question else rel
    if key != instance_id:
        return f"{label} — {key[len(instance_id) :].lstrip('/')}"
    return label


def _changes(
    schema: FormSchema, before: Answers, after: Answers, instance_id: str, lang: str, shown: Shown
) -> list[Change]:
    changed = []
    order = list(before) + [k for k in after if k not in before]
    for key in order:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        question = schema.by_rel.get(key[1])
        if question is None:
            continue
        old_shown, new_shown = shown(question, old), shown(question, new)
        if old_shown == new_shown:  # a change the requester may not see (a personal answer re-typed)
            old_shown, new_shown = _("(hidden)"), _("(hidden, changed)")
        changed.append(Change(_label(schema, key[0], key[1], instance_id, lang), old_shown, new_shown))
    return changed


def _by(session: Session, fa: FormAccess, version: SubmissionVersion) -> str:
    if version.user_id:
        user = session.get(User, version.user_id)
        return user.display_name if user else ""
    if version.app_user_id:
        device = session.get(AppUser, version.app_user_id)
        return shown_identity(fa.access, device.display_name) or "" if device else ""
    return version.source


def versions(
    fa: FormAccess, session: Session, sub: Submission, lang: str, shown: Shown
) -> list[VersionEntry]:
    """Each version, oldest first, with what changed from the one before it."""
    schema = fa.schema(session)
    entries: list[VersionEntry] = []
    previous: Answers | None = None
    for number, version in enumerate(sub.versions, start=1):
        answers = _answers(schema, version, sub.instance_id)
        entry = VersionEntry(
            number, version, _by(session, fa, version), version.id == sub.current_version_id, answers is None
        )
        if previous is not None and answers is not None:
            entry.changes = _changes(schema, previous, answers, sub.instance_id, lang, shown)
        previous = answers if answers is not None else previous
        entries.append(entry)
    return entries


@dataclass
class TrailEntry:
    event: AuditEvent
    actor: str
    details: str


def trail(fa: FormAccess, session: Session, sub: Submission) -> list[TrailEntry]:
    """The audit events about this submission and its conflicts, newest first. Details are shown to
    those who see raw data only (they may carry device ids)."""
    instance_ids = {v.instance_id for v in sub.versions} | {sub.instance_id}
    conflicts = session.scalars(
        select(Conflict.id).where(Conflict.form_id == sub.form_id, Conflict.instance_id.in_(instance_ids))
    )
    targets = [("submission", str(sub.id)), *(("conflict", str(c)) for c in conflicts)]
    events = audit.find(session, audit.AuditQuery(targets=targets))
    names = actor_names(events)
    entries = []
    for event in events:
        if event.actor_user_id:
            actor = names.get(("user", event.actor_user_id), "")
        elif event.actor_app_user_id:
            actor = shown_identity(fa.access, names.get(("device", event.actor_app_user_id))) or ""
        else:
            actor = "—"
        entries.append(TrailEntry(event, actor, details_text(event.details) if fa.access.raw else ""))
    return entries
