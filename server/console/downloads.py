"""Downloads of a project: cleaned exports (CSV zip, XLSX, JSON lines, GeoJSON) and donor reports.

The options are those of the API (``GET .../export.{fmt}`` and ``GET .../report.{fmt}``) and pass through
the same code: :mod:`server.datasets.export` (with the requester's :func:`access_for`, so an analyst's file
holds the same pseudonyms as via the API) and :mod:`server.datasets.report_files`. Every download runs as
a background job (:mod:`server.jobs`) and is audited as ``via: console`` before any byte is written; the
job page shows its progress and then the link to the file.
"""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from server import auth, config, db, errors, jobs
from server.console import console
from server.console.pages import REVIEW_STATES
from server.console.session import require_signed_in
from server.datasets import Filters, parse_bound
from server.datasets.export import (
    LANGUAGE_CODES,
    check_export,
    check_language,
    download_name,
    find_format,
    record_export,
    stream_export,
)
from server.datasets.redact import access_for
from server.datasets.report import ReportRequest, split_dimensions
from server.datasets.report_files import REPORT_FORMATS, check_report_format, min_cell, produce_report
from server.datasets.tables import ExportOptions, sanitize_filename
from server.forms.publish import find_form
from server.models import ConsoleJob, Form, User
from server.projects import find_project

EXPORT_FORMATS = ("csv.zip", "xlsx", "jsonl", "geojson")
RECENT_JOBS = 10


def _checked(name: str) -> bool:
    return request.form.get(name) in ("1", "on", "true")


@console.get("/projects/<int:project_id>/downloads")
def downloads_page(project_id: int) -> ResponseReturnValue:
    user = require_signed_in()
    auth.require_project_role(project_id)
    jobs.sweep_now_and_then(db.database(), config.settings().data_dir)
    session = db.session()
    project = find_project(session, project_id)
    forms = list(
        session.scalars(
            select(Form)
            .where(
                Form.project_id == project_id, Form.deleted_at.is_(None), Form.current_version_id.is_not(None)
            )
            .order_by(Form.xml_form_id)
        )
    )
    recent = list(
        session.scalars(
            select(ConsoleJob)
            .where(ConsoleJob.user_id == user.id, ConsoleJob.project_id == project_id)
            .order_by(ConsoleJob.created_at.desc())
            .limit(RECENT_JOBS)
        )
    )
    access = access_for(session, user, project)
    return render_template(
        "downloads.html",
        project=project,
        forms=forms,
        formats=EXPORT_FORMATS,
        report_formats=tuple(REPORT_FORMATS),
        export_languages=LANGUAGE_CODES,
        review_states=REVIEW_STATES,
        recent=recent,
        redacted=not access.raw,
        min_cell=config.settings().report_min_cell,
    )


def _form_of(project_id: int) -> tuple[User, Any, Form]:
    user = require_signed_in()
    auth.require_project_role(project_id)
    session = db.session()
    project = find_project(session, project_id)
    return user, project, find_form(session, project.id, request.form.get("form", ""))


@console.post("/projects/<int:project_id>/downloads/export")
def start_export(project_id: int) -> ResponseReturnValue:
    user, project, form = _form_of(project_id)
    session = db.session()
    fmt = find_format(request.form.get("format", ""))
    if fmt.name not in EXPORT_FORMATS:
        raise errors.bad_request(_("Choose one of the formats offered."))
    states = tuple(s for s in request.form.getlist("review_state") if s)
    opts = ExportOptions(
        access=access_for(session, user, project),
        filters=Filters(
            since=parse_bound(request.form.get("since"), name="since"),
            until=parse_bound(request.form.get("until"), end=True, name="until"),
            review_states=states,
            include_rejected=_checked("include_rejected"),
            include_test=_checked("include_test"),
        ),
        clean=True,
        lang=check_language(request.form.get("lang")),
        labels=_checked("labels"),
        label_headers=_checked("label_headers"),
        split_select_multiples=_checked("split_select_multiples"),
        attachments=_checked("attachments") and fmt.name == "csv.zip",
        merged=True,
    )
    database = db.database()
    check_export(session, database, form, fmt, opts)
    form_pk = form.id
    with database.write() as writer:  # on record before any byte is written, as the API does
        fresh = writer.session.get(Form, form_pk)
        assert fresh is not None
        record_export(writer.session, fresh, fmt, opts, user, via="console")
    name = download_name(form, fmt)

    def work(progress: jobs.Progress) -> jobs.JobResult:
        written = 0
        with (progress.folder / name).open("wb") as out:
            for chunk in stream_export(database, form_pk, fmt, opts):
                out.write(chunk)
                written += len(chunk)
                progress.update(written)
        return jobs.JobResult(name, fmt.content_type)

    job_id = jobs.start(
        kind="export",
        title=_("Export of %(form)s (%(format)s)", form=form.xml_form_id, format=fmt.name),
        user_id=user.id,
        project_id=project.id,
        work=work,
    )
    return redirect(url_for("console.job_page", job_id=job_id))


@console.post("/projects/<int:project_id>/downloads/report")
def start_report(project_id: int) -> ResponseReturnValue:
    user, _project, form = _form_of(project_id)
    fmt = check_report_format(request.form.get("format", ""))
    rows = split_dimensions(request.form.get("rows", ""))
    if not rows:
        raise errors.bad_request(_("Name at least one question to count by (rows)."))
    asked = request.form.get("min_cell", "").strip()
    if asked and not asked.isdigit():
        raise errors.bad_request(_("The smallest count shown must be a whole number."))
    report_request = ReportRequest(
        rows=rows,
        cols=request.form.get("cols", "").strip() or None,
        lang=check_language(request.form.get("lang")),
        filters=Filters(
            since=parse_bound(request.form.get("since"), name="since"),
            until=parse_bound(request.form.get("until"), end=True, name="until"),
        ),
        min_cell=min_cell(config.settings().report_min_cell, int(asked) if asked else None),
    )
    database = db.database()
    form_pk, user_pk = form.id, user.id
    name = f"{sanitize_filename(form.xml_form_id)}-report.{fmt}"

    def work(progress: jobs.Progress) -> jobs.JobResult:
        with database.read() as session:
            actor = session.get(User, user_pk)
            assert actor is not None
            session.expunge(actor)
        report, data = produce_report(database, form_pk, report_request, fmt, actor, via="console")
        (progress.folder / name).write_bytes(data)
        progress.update(len(data), force=True)
        # The suppression notes travel with the file and are shown on the job's page.
        return jobs.JobResult(name, REPORT_FORMATS[fmt], "\n".join(report.notes()))

    job_id = jobs.start(
        kind="report",
        title=_("Donor report of %(form)s (%(format)s)", form=form.xml_form_id, format=fmt),
        user_id=user.id,
        project_id=form.project_id,
        work=work,
    )
    return redirect(url_for("console.job_page", job_id=job_id))
