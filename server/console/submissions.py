"""Submissions of a form: a filtered table with keyset paging, and one submission's page (labelled
answers, review state, comments).

- Every value passes through :func:`server.datasets.redact.redact_value` with the requester's
  :func:`~server.datasets.redact.access_for` (via the API's ``form_access``): an analyst sees the same
  pseudonyms here as in exports and the API; device names are pseudonymised the same way.
- Paging is by keyset, never OFFSET: the table is ordered by (received, id) newest first and the next
  page starts below the last row shown, so page 2,000 of 100,000 submissions costs what page 1 does
  (the ``(form_id, created_at, id)`` index serves the order, the cursor and the date filter).
- Column headings and choice labels come from the form in the page's language when it has them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import select, tuple_
from sqlalchemy.orm import aliased

from server import audit, db, errors
from server.api.submissions import (
    MAX_COMMENT_CHARS,
    WRITE_ROLES,
    FormAccess,
    find_submission,
    form_access,
    shown_identity,
)
from server.console import console
from server.console.i18n import TIMEZONE
from server.console.pages import REVIEW_STATES, role_in
from server.console.session import require_signed_in
from server.datasets.reader import UnreadableXml, read
from server.datasets.redact import redact_value
from server.datasets.schema import Field, FormSchema
from server.entities.from_submissions import apply_approval
from server.models import AppUser, Comment, ReviewState, Submission, SubmissionVersion, User, utcnow

PAGE_SIZE = 50
TABLE_COLUMNS = 6
_LOCAL = ZoneInfo(TIMEZONE)


def _lang() -> str:
    return str(get_locale() or "en")


def _access(project_id: int, xml_form_id: str, *roles: str) -> FormAccess:
    require_signed_in()
    return form_access(project_id, xml_form_id, *roles)


def _shown(fa: FormAccess, field: Field, value: str | None, lang: str) -> str:
    """One answer as this requester may see it, a choice shown by its label."""
    shown = redact_value(fa.access, field, value)
    if not shown:
        return ""
    if field.type in ("select1", "select") and shown == value and field.choices:
        parts = shown.split() if field.type == "select" else [shown]
        return ", ".join(field.choice_label(p, lang) or p for p in parts)
    return shown


def _table_fields(schema: FormSchema) -> list[Field]:
    """The first questions of the root table (no meta, no files) as the table's columns."""
    fields = [
        f
        for f in schema.table_fields(None)
        if not f.rel.startswith("/meta/") and not f.binary and f.labels and f.type != "structure"
    ]
    return fields[:TABLE_COLUMNS]


def _day_start(text: str | None, *, next_day: bool = False) -> dt.datetime | None:
    """A date typed in the filter (Tajikistan's calendar day) → its start as an aware datetime."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise errors.bad_request(_("%(value)s is not a date.", value=text)) from None
    if next_day:
        day += dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=_LOCAL).astimezone(dt.UTC)


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: below (received, id) of the last row shown."""

    created_at: dt.datetime
    id: int

    def encode(self) -> str:
        return f"{self.created_at.timestamp():.6f}_{self.id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        if not text:
            return None
        try:
            stamp, ident = text.split("_", 1)
            return cls(dt.datetime.fromtimestamp(float(stamp), dt.UTC), int(ident))
        except (ValueError, OverflowError, OSError):
            raise errors.bad_request(_("This page link is broken; start from the first page.")) from None


@console.get("/projects/<int:project_id>/forms/<xml_form_id>/submissions")
def submissions_page(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    fa = _access(project_id, xml_form_id)
    session = db.session()
    lang = _lang()
    schema = fa.schema(session)
    columns = _table_fields(schema)
    args = request.args
    since, until = _day_start(args.get("from")), _day_start(args.get("to"), next_day=True)
    review = args.get("review") or None
    if review is not None and review not in REVIEW_STATES:
        raise errors.bad_request(_("Unknown review state."))
    device = args.get("device", type=int)
    cursor = Cursor.decode(args.get("after"))

    current = aliased(SubmissionVersion)
    stmt = (
        select(Submission, current)
        .join(current, current.id == Submission.current_version_id)
        .where(Submission.form_id == fa.form.id, Submission.deleted_at.is_(None))
    )
    if since is not None:
        stmt = stmt.where(Submission.created_at >= since)
    if until is not None:
        stmt = stmt.where(Submission.created_at < until)
    if review is not None:
        stmt = stmt.where(Submission.review_state == review)
    if device is not None:
        stmt = stmt.where(current.app_user_id == device)
    if cursor is not None:
        # The plain bound on created_at lets the index start the scan at the cursor; the pair decides ties.
        stmt = stmt.where(
            Submission.created_at <= cursor.created_at,
            tuple_(Submission.created_at, Submission.id) < (cursor.created_at, cursor.id),
        )
    stmt = stmt.order_by(Submission.created_at.desc(), Submission.id.desc()).limit(PAGE_SIZE + 1)
    found = session.execute(stmt).all()
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]

    devices = list(
        session.scalars(select(AppUser).where(AppUser.project_id == fa.project.id).order_by(AppUser.id))
    )
    names = {d.id: shown_identity(fa.access, d.display_name) for d in devices}
    rows = []
    for sub, version in found:
        try:
            values = next(read(version.xml, schema.by_rel, sub.instance_id)).values
        except UnreadableXml:
            values = {}
        rows.append(
            {
                "sub": sub,
                "device": names.get(version.app_user_id) if version.app_user_id else None,
                "cells": [_shown(fa, f, values.get(f.rel), lang) for f in columns],
            }
        )
    next_args = None
    if more:
        last = found[-1][0]
        next_args = {k: v for k, v in args.items() if k != "after" and v}
        next_args["after"] = Cursor(last.created_at, last.id).encode()
    return render_template(
        "submissions.html",
        project=fa.project,
        form=fa.form,
        title=_form_title(fa),
        columns=[f.label(lang) or f.name for f in columns],
        rows=rows,
        devices=[(d.id, names[d.id]) for d in devices],
        filters={"from": args.get("from", ""), "to": args.get("to", ""), "review": review, "device": device},
        review_states=REVIEW_STATES,
        next_args=next_args,
        first_page=cursor is None,
    )


def _form_title(fa: FormAccess) -> str:
    version = fa.form.current_version
    return version.title if version else fa.form.xml_form_id


@dataclass
class AnswerGroup:
    """The answers of the submission (``title`` None) or of one repeat instance."""

    title: str | None
    answers: list[tuple[str, str]]


def _answers(fa: FormAccess, version: SubmissionVersion, lang: str) -> list[AnswerGroup]:
    schema = fa.schema(db.session())
    groups = []
    try:
        rows = list(read(version.xml, schema.by_rel, version.submission.instance_id))
    except UnreadableXml:
        return []
    for row in rows:
        fields = schema.table_fields(row.table)
        answers = [
            (f.label(lang) or f.name, _shown(fa, f, row.values.get(f.rel), lang))
            for f in fields
            if f.rel in row.values and not f.rel.startswith("/meta/")
        ]
        title = None
        if row.table is not None:
            repeat = schema.by_rel.get(row.table)
            label = repeat.label(lang) if repeat else row.table
            title = f"{label or row.table} — {row.key.rsplit('/', 1)[-1]}"
        groups.append(AnswerGroup(title, answers))
    return groups


@console.get("/projects/<int:project_id>/forms/<xml_form_id>/submissions/<instance_id>")
def submission_page(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = _access(project_id, xml_form_id)
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    version = sub.current_version
    assert version is not None
    comments = list(
        session.scalars(select(Comment).where(Comment.submission_id == sub.id).order_by(Comment.id))
    )
    authors = {
        u.id: u.display_name
        for u in session.scalars(select(User).where(User.id.in_({c.user_id for c in comments})))
    }
    device = session.get(AppUser, version.app_user_id) if version.app_user_id else None
    return render_template(
        "submission.html",
        project=fa.project,
        form=fa.form,
        title=_form_title(fa),
        sub=sub,
        version=version,
        device=shown_identity(fa.access, device.display_name) if device else None,
        groups=_answers(fa, version, _lang()),
        comments=[(c, authors.get(c.user_id, "")) for c in comments],
        may_review=role_in(fa.user, fa.project.id) in WRITE_ROLES,
        review_states=REVIEW_STATES,
        redacted=not fa.access.raw,
        max_comment=MAX_COMMENT_CHARS,
    )


def _back(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    return redirect(
        url_for(
            "console.submission_page", project_id=project_id, xml_form_id=xml_form_id, instance_id=instance_id
        )
    )


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/submissions/<instance_id>/review")
@db.write_request
def review_submission(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = _access(project_id, xml_form_id, *WRITE_ROLES)
    state = request.form.get("review_state", "")
    if state not in REVIEW_STATES:
        raise errors.bad_request(_("Unknown review state."))
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    before = sub.review_state
    if before != state:
        sub.review_state = state
        sub.updated_at = utcnow()
        _audit(fa, sub, "submission.review", before=before, after=state)
        if state == ReviewState.APPROVED:
            apply_approval(session, project_id, sub, xml_form_id, fa.user)
    return _back(project_id, xml_form_id, instance_id)


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/submissions/<instance_id>/comments")
@db.write_request
def comment_submission(project_id: int, xml_form_id: str, instance_id: str) -> ResponseReturnValue:
    fa = _access(project_id, xml_form_id)
    body = request.form.get("body", "").strip()
    if not body or len(body) > MAX_COMMENT_CHARS:
        raise errors.bad_request(_("A comment needs 1 to %(max)d characters.", max=MAX_COMMENT_CHARS))
    session = db.session()
    sub = find_submission(session, fa.form, instance_id)
    comment = Comment(submission_id=sub.id, user_id=fa.user.id, body=body, created_at=utcnow())
    session.add(comment)
    session.flush()
    _audit(fa, sub, "submission.comment", comment_id=comment.id)
    return _back(project_id, xml_form_id, instance_id)


def _audit(fa: FormAccess, sub: Submission, action: str, **details: Any) -> None:
    """The same audit row as the API writes for the same change, marked as made in the console."""
    audit.record(
        db.session(),
        action,
        actor=fa.user,
        project_id=fa.form.project_id,
        target_type="submission",
        target_id=sub.id,
        form=fa.form.xml_form_id,
        instance_id=sub.instance_id,
        via="console",
        **details,
    )
