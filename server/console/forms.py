"""The project page (its forms, XLSForm upload) and the form page (versions, draft, publish, state).

An upload becomes the form's draft, as in ODK Central; the coordinator reads pyxform's warnings and
publishes it. Conversion runs outside any transaction (it may take a minute), then one write
transaction stores it, checking the role again: the same order as ``server.api.forms``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import func, select

from server import auth, config, db, errors
from server.api.forms import WRITE_ROLES
from server.console import console
from server.console.pages import FORM_STATES, role_in
from server.console.session import forget_user, require_signed_in
from server.forms.convert import file_type_of
from server.forms.publish import (
    Outcome,
    attach_to_draft,
    discard_draft,
    draft_from_current,
    find_draft,
    find_form,
    publish_draft,
    published_versions,
    save_draft,
    set_state,
    source_from_xform,
    source_from_xlsform,
)
from server.models import Form, Project, Submission
from server.projects import find_project

VIA = "console"


def _project_for(project_id: int, *roles: str) -> tuple[Any, Project, str | None]:
    """The signed-in user, the project and the user's role there: 403 before 404, as the API does."""
    user = require_signed_in()
    auth.require_project_role(project_id, *roles)
    project = find_project(db.session(), project_id)
    return user, project, role_in(user, project_id)


def _form_rows(project: Project) -> list[dict[str, Any]]:
    session = db.session()
    forms = list(
        session.scalars(
            select(Form).where(Form.project_id == project.id, Form.deleted_at.is_(None)).order_by(Form.id)
        )
    )
    counts = dict(
        session.execute(
            select(Submission.form_id, func.count())
            .where(Submission.form_id.in_([f.id for f in forms]), Submission.deleted_at.is_(None))
            .group_by(Submission.form_id)
        ).all()
    )
    rows = []
    for form in forms:
        draft = find_draft(session, form)
        shown = form.current_version or draft
        rows.append(
            {
                "form": form,
                "title": shown.title if shown else form.xml_form_id,
                "version": form.current_version.version if form.current_version else None,
                "draft": draft,
                "submissions": counts.get(form.id, 0),
            }
        )
    return rows


def _project_page(project: Project, role: str | None, status: int = 200, **extra: Any) -> Response:
    html = render_template(
        "project.html",
        project=project,
        role=role,
        may_write=role in WRITE_ROLES,
        forms=_form_rows(project),
        **extra,
    )
    return Response(html, status=status, mimetype="text/html")


@console.get("/projects/<int:project_id>")
def project_page(project_id: int) -> ResponseReturnValue:
    _user, project, role = _project_for(project_id)
    return _project_page(project, role)


@console.post("/projects/<int:project_id>/forms")
def upload_form(project_id: int) -> ResponseReturnValue:
    """An XLSForm (or XForm) file becomes the form's draft; pyxform's errors come back with sheet and row."""
    _user, project, role = _project_for(project_id, *WRITE_ROLES)
    upload = request.files.get("xlsform")
    try:
        if upload is None or not upload.filename:
            raise errors.invalid_form(_("Choose an XLSForm file to upload."))
        source = _convert(upload.filename, upload.read())
    except errors.Problem as problem:
        if problem.status >= 500:
            raise
        return _project_page(project, role, status=problem.status, upload_error=problem)
    db.session().rollback()  # no read transaction stays open while the write below waits its turn
    forget_user()
    outcome = _store_draft(project_id, source)
    return Response(render_template("uploaded.html", project=project, outcome=outcome), mimetype="text/html")


def _convert(filename: str, data: bytes) -> Any:
    settings = config.settings()
    if Path(filename).suffix.lower() == ".xml":
        return source_from_xform(data, settings)
    file_type = file_type_of(filename)
    if file_type is None:
        raise errors.invalid_form(
            _("%(name)s is not an XLSForm: use an .xlsx, .xls, .xlsm, .csv, .md or .xml file.", name=filename)
        )
    return source_from_xlsform(data, settings, filename=filename, file_type=file_type)


@db.write_request
def _store_draft(project_id: int, source: Any) -> Outcome:
    user = require_signed_in()
    auth.require_project_role(project_id, *WRITE_ROLES)
    project = find_project(db.session(), project_id)
    outcome = save_draft(db.writer(), project, source, actor=user, via=VIA)
    db.session().flush()
    return outcome


def _form_for(
    project_id: int, xml_form_id: str, *roles: str, lock: bool = False
) -> tuple[Any, Form, str | None]:
    user, _project, role = _project_for(project_id, *roles)
    return user, find_form(db.session(), project_id, xml_form_id, lock=lock), role


@console.get("/projects/<int:project_id>/forms/<xml_form_id>")
def form_page(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    _user, form, role = _form_for(project_id, xml_form_id)
    session = db.session()
    count = session.scalar(
        select(func.count()).where(Submission.form_id == form.id, Submission.deleted_at.is_(None))
    )
    return render_template(
        "form.html",
        project=form.project,
        form=form,
        role=role,
        may_write=role in WRITE_ROLES,
        versions=published_versions(session, form),
        draft=find_draft(session, form),
        submissions=count or 0,
        states=FORM_STATES,
    )


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/publish")
@db.write_request
def publish_form(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    user, form, _role = _form_for(project_id, xml_form_id, *WRITE_ROLES, lock=True)
    publish_draft(db.writer(), form, user, via=VIA)
    return redirect(url_for("console.form_page", project_id=project_id, xml_form_id=xml_form_id))


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/state")
@db.write_request
def change_form_state(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    user, form, _role = _form_for(project_id, xml_form_id, *WRITE_ROLES, lock=True)
    state = request.form.get("state", "")
    if state not in FORM_STATES:
        raise errors.bad_request(_("Choose open, closing or closed."))
    set_state(db.session(), form, state, user, via=VIA)
    return redirect(url_for("console.form_page", project_id=project_id, xml_form_id=xml_form_id))


def _back_to_form(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return redirect(url_for("console.form_page", project_id=project_id, xml_form_id=xml_form_id))


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/draft/media")
@db.write_request
def upload_draft_media(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    """Media files for the draft, matched by file name (a file already there is replaced), through the
    API's ``attach_to_draft``; a name the draft does not use is refused with the names it does use."""
    user, form, _role = _form_for(project_id, xml_form_id, *WRITE_ROLES, lock=True)
    uploads = [f for f in request.files.getlist("media") if f.filename]
    if not uploads:
        raise errors.bad_request(_("Choose the media files to upload."))
    draft = find_draft(db.session(), form)
    used = sorted(m.name for m in draft.media) if draft else []
    unknown = [f.filename for f in uploads if f.filename not in used]
    if draft is not None and unknown:
        raise errors.bad_request(
            _(
                "The draft does not use %(names)s. It uses: %(used)s.",
                names=", ".join(str(n) for n in unknown),
                used=", ".join(used) or "—",
            )
        )
    for upload in uploads:
        attach_to_draft(db.writer(), form, str(upload.filename), upload.stream, user, via=VIA)
    return _back_to_form(project_id, xml_form_id)


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/draft/new")
@db.write_request
def new_draft(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    """A draft copied from the published version (to add or replace its media, then publish)."""
    user, form, _role = _form_for(project_id, xml_form_id, *WRITE_ROLES, lock=True)
    draft_from_current(db.writer(), form, user, via=VIA)
    return _back_to_form(project_id, xml_form_id)


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/draft/discard")
@db.write_request
def discard_form_draft(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    user, form, _role = _form_for(project_id, xml_form_id, *WRITE_ROLES, lock=True)
    discard_draft(db.writer(), form, user, via=VIA)
    return _back_to_form(project_id, xml_form_id)
