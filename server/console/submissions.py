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

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import Select, or_, select, tuple_
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
from server.console import console, history
from server.console.pages import REVIEW_STATES, day_start, role_in, safe_next
from server.console.session import require_signed_in
from server.console.submission_files import shown_files
from server.datasets.reader import UnreadableXml, read
from server.datasets.redact import redact_value
from server.datasets.schema import Field, FormSchema, blob_media_reader, load_schema
from server.entities.from_submissions import apply_approval
from server.models import (
    AppUser,
    Comment,
    Conflict,
    ReviewState,
    Submission,
    SubmissionVersion,
    User,
    utcnow,
)

PAGE_SIZE = 50
TABLE_COLUMNS = 6


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


@dataclass(frozen=True)
class Filters:
    """The table's filters as the query string gives them (empty values mean "any")."""

    since: dt.datetime | None
    until: dt.datetime | None
    region: str | None
    district: str | None
    review: str | None
    device: int | None
    issues: bool

    @classmethod
    def read(cls, args: Any) -> Filters:
        review = args.get("review") or None
        if review is not None and review not in REVIEW_STATES:
            raise errors.bad_request(_("Unknown review state."))
        return cls(
            since=day_start(args.get("from")),
            until=day_start(args.get("to"), next_day=True),
            region=args.get("region") or None,
            district=args.get("district") or None,
            review=review,
            device=args.get("device", type=int),
            issues=args.get("issues") == "1",
        )


def filtered(stmt: Select[Any], form_id: int, filters: Filters, cursor: Cursor | None) -> Select[Any]:
    """``stmt`` (over ``Submission``) narrowed by the filters and the cursor, newest first. Each equality
    filter has an index (form_id, value, created_at, id), so a filtered page is read in order too."""
    stmt = stmt.where(Submission.form_id == form_id, Submission.deleted_at.is_(None))
    if filters.since is not None:
        stmt = stmt.where(Submission.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Submission.created_at < filters.until)
    if filters.region is not None:
        stmt = stmt.where(Submission.region == filters.region)
    if filters.district is not None:
        stmt = stmt.where(Submission.district == filters.district)
    if filters.review is not None:
        stmt = stmt.where(Submission.review_state == filters.review)
    if filters.device is not None:
        stmt = stmt.where(Submission.app_user_id == filters.device)
    if filters.issues:
        # Marked "has issues" by a reviewer, or a conflicting payload for it kept and not yet decided.
        # Both sides have an index ((form, review state) and (form, instanceID)), and few rows match
        # either, so the database reads those and sorts them instead of walking the whole form.
        kept = select(Conflict.instance_id).where(Conflict.form_id == form_id, Conflict.resolved_at.is_(None))
        stmt = stmt.where(
            or_(Submission.review_state == ReviewState.HAS_ISSUES, Submission.instance_id.in_(kept))
        )
    if cursor is not None:
        # The plain bound on created_at lets the index start the scan at the cursor; the pair decides ties.
        stmt = stmt.where(
            Submission.created_at <= cursor.created_at,
            tuple_(Submission.created_at, Submission.id) < (cursor.created_at, cursor.id),
        )
    return stmt.order_by(Submission.created_at.desc(), Submission.id.desc())


def _place_field(schema: FormSchema, name: str) -> Field | None:
    """The root-table question named ``name`` (the first, as ingest takes the first answer)."""
    return next((f for f in schema.table_fields(None) if f.name == name), None)


def _place_options(fa: FormAccess, field: Field | None, lang: str) -> list[tuple[str, str]] | None:
    """The values a place filter offers (None: no such question, or this role may not see it)."""
    if field is None or redact_value(fa.access, field, "x") != "x":
        return None  # filtering by a value one may not read would reveal it
    return [(c.value, field.choice_label(c.value, lang) or c.value) for c in field.choices]


def column_key(fa: FormAccess) -> str:
    return f"{fa.project.id}/{fa.form.xml_form_id}"


def chosen_columns(fa: FormAccess, choosable: list[Field]) -> list[Field]:
    """The columns this user chose for this form (remembered on the user), else the first questions."""
    saved = (fa.user.console_columns or {}).get(column_key(fa))
    if isinstance(saved, list):
        by_rel = {f.rel: f for f in choosable}
        picked = [by_rel[r] for r in saved if r in by_rel]
        if picked or not saved:
            return picked
    return choosable[:TABLE_COLUMNS]


def _choosable(schema: FormSchema) -> list[Field]:
    """The questions of the root table that can be columns (no meta, no files, no groups)."""
    return [
        f
        for f in schema.table_fields(None)
        if not f.rel.startswith("/meta/") and not f.binary and f.labels and f.type != "structure"
    ]


@console.get("/projects/<int:project_id>/forms/<xml_form_id>/submissions")
def submissions_page(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    fa = _access(project_id, xml_form_id)
    session = db.session()
    lang = _lang()
    # With the form's CSV media, so that choices from a file (districts.csv) show by their labels.
    schema = load_schema(session, fa.form, media=blob_media_reader(session, db.database().blobs))
    choosable = _choosable(schema)
    columns = chosen_columns(fa, choosable)
    filters = Filters.read(request.args)
    cursor = Cursor.decode(request.args.get("after"))

    current = aliased(SubmissionVersion)
    stmt = filtered(
        select(Submission, current).join(current, current.id == Submission.current_version_id),
        fa.form.id,
        filters,
        cursor,
    ).limit(PAGE_SIZE + 1)
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
        device_id = sub.app_user_id or version.app_user_id
        rows.append(
            {
                "sub": sub,
                "device": names.get(device_id) if device_id else None,
                "cells": [_shown(fa, f, values.get(f.rel), lang) for f in columns],
            }
        )
    args = request.args
    next_args = None
    if more:
        last = found[-1][0]
        next_args = {k: v for k, v in args.items() if k != "after" and v}
        next_args["after"] = Cursor(last.created_at, last.id).encode()
    first_args = {k: v for k, v in args.items() if k != "after" and v}
    return render_template(
        "submissions.html",
        project=fa.project,
        form=fa.form,
        title=_form_title(fa),
        columns=[f.label(lang) or f.name for f in columns],
        choosable=[(f.rel, f.label(lang) or f.name) for f in choosable],
        chosen={f.rel for f in columns},
        rows=rows,
        devices=[(d.id, names[d.id]) for d in devices],
        regions=_place_options(fa, _place_field(schema, "region"), lang),
        districts=_place_options(fa, _place_field(schema, "district"), lang),
        filters=filters,
        args=args,
        review_states=REVIEW_STATES,
        next_args=next_args,
        first_args=first_args,
        first_page=cursor is None,
    )


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/submissions/columns")
@db.write_request
def choose_columns(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    """Remember the columns this user chose for this form's table (on the user row: any computer)."""
    fa = _access(project_id, xml_form_id)
    session = db.session()
    known = {f.rel for f in _choosable(fa.schema(session))}
    picked = [rel for rel in request.form.getlist("column") if rel in known]
    saved = dict(fa.user.console_columns or {})
    if request.form.get("reset"):
        saved.pop(column_key(fa), None)
    else:
        saved[column_key(fa)] = picked
    fa.user.console_columns = saved  # a new dict, so that the JSON column is written
    back = request.form.get("next") or ""
    return redirect(
        safe_next(back)
        if back
        else url_for("console.submissions_page", project_id=project_id, xml_form_id=xml_form_id)
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
    if version.encrypted:  # an envelope: nothing in it is an answer (the page says so)
        return []
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
    lang = _lang()

    def shown(field: Field, value: str | None) -> str:
        return _shown(fa, field, value, lang)

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
        files=shown_files(fa, version),
        history=history.versions(fa, session, sub, lang, shown),
        trail=history.trail(fa, session, sub),
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
