"""Devices (app users): create one and show its Collect QR code, a printable sheet of codes for a
training day, revoke, rotate; a device that signs in with a username and password (HTTP Digest, on a
hub's local network); which forms each device sees. The same rules and code as
``/v1/projects/{p}/app-users`` and ``/v1/projects/{p}/forms/{f}/assignments``.

A device's token is shown only once (the database keeps its hash), so its QR code can exist only in the
answer that created or rotated it. The code is made here (segno) and put in the page as a ``data:`` PNG
image: it is never a URL that a log, a proxy or the browser's history could keep.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import segno
from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from server import auth, config, db, devices, errors, qr
from server.api.app_users import WRITERS
from server.console import console
from server.console.session import require_signed_in
from server.forms.publish import find_form
from server.models import AppUser, Form, Project
from server.projects import find_project

MAX_SHEET = 60  # codes on one printed sheet request


@dataclass(frozen=True)
class IssuedCode:
    """A device with the Collect settings of its fresh token, ready to show."""

    app_user: AppUser
    server_url: str
    png_data_uri: str

    @property
    def username(self) -> str | None:
        """The username Collect signs in with, for a device with a password (Digest)."""
        return self.app_user.display_name if self.app_user.digest_ha1 is not None else None


def _writable_project(project_id: int) -> tuple[object, Project]:
    user = require_signed_in()
    auth.require_project_role(project_id, *WRITERS)
    return user, find_project(db.session(), project_id)


def server_base() -> str:
    """The URL devices reach this server at: SARHAD_BASE_URL, else the address this page was opened at
    (the coordinator opens the console on the hub's network address, as the tablets will)."""
    return (config.settings().base_url or request.host_url).rstrip("/")


def issue_code(project: Project, app_user: AppUser, token: str) -> IssuedCode:
    base = server_base()
    if app_user.digest_ha1 is not None:
        url = f"{base}/v1/projects/{project.id}"
        payload = qr.collect_settings_payload(url, project.name, username=app_user.display_name)
    else:
        url = f"{base}/v1/key/{token}/projects/{project.id}"
        payload = qr.collect_settings_payload(url, project.name)
    out = io.BytesIO()
    segno.make(payload, error="m").save(out, kind="png", scale=4, border=4)
    data_uri = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
    return IssuedCode(app_user, url, data_uri)


def _realm() -> str:
    return str(config.settings().digest_realm)


def _project_forms(project: Project) -> list[Form]:
    """The forms a device can be given: published and not deleted, by form id."""
    return list(
        db.session().scalars(
            select(Form)
            .where(
                Form.project_id == project.id,
                Form.deleted_at.is_(None),
                Form.current_version_id.is_not(None),
            )
            .order_by(Form.xml_form_id)
        )
    )


def form_title(form: Form) -> str:
    return form.current_version.title if form.current_version else form.xml_form_id


def _devices_page(project: Project, message: str | None = None) -> str:
    session = db.session()
    rows = list(session.scalars(select(AppUser).where(AppUser.project_id == project.id).order_by(AppUser.id)))
    titles = {f.id: form_title(f) for f in _project_forms(project)}
    # What each device sees: its assigned forms, or every open form when it has none.
    sees = {
        d.id: sorted(titles[i] for i in devices.assigned_form_ids(session, d) if i in titles) for d in rows
    }
    return render_template(
        "devices.html", project=project, devices=rows, sees=sees, max_sheet=MAX_SHEET, message=message
    )


@console.get("/projects/<int:project_id>/devices")
def devices_page(project_id: int) -> ResponseReturnValue:
    _user, project = _writable_project(project_id)
    return _devices_page(project)


@console.post("/projects/<int:project_id>/devices")
@db.write_request
def create_device(project_id: int) -> ResponseReturnValue:
    """A device with a token (its QR code signs it in), or, when a password is given, one that signs in
    with its name and that password (HTTP Digest, for Collect on a hub's local network over plain HTTP)."""
    user, project = _writable_project(project_id)
    password = request.form.get("password") or None
    if password is not None and password != request.form.get("password_again"):
        raise errors.bad_request(_("The two passwords differ: type the same password twice."))
    app_user, token = devices.create_app_user(
        db.session(),
        project,
        request.form.get("name", ""),
        password=password,
        realm=_realm(),
        actor=user,  # type: ignore[arg-type]
    )
    return render_template("device_code.html", project=project, codes=[issue_code(project, app_user, token)])


@console.post("/projects/<int:project_id>/devices/<int:app_user_id>/rotate")
@db.write_request
def rotate_device(project_id: int, app_user_id: int) -> ResponseReturnValue:
    user, project = _writable_project(project_id)
    app_user = devices.find_app_user(db.session(), project, app_user_id)
    token = devices.rotate_token(db.session(), app_user, user)  # type: ignore[arg-type]
    return render_template("device_code.html", project=project, codes=[issue_code(project, app_user, token)])


@console.post("/projects/<int:project_id>/devices/<int:app_user_id>/revoke")
@db.write_request
def revoke_device(project_id: int, app_user_id: int) -> ResponseReturnValue:
    user, project = _writable_project(project_id)
    app_user = devices.find_app_user(db.session(), project, app_user_id)
    devices.revoke_app_user(db.session(), app_user, user)  # type: ignore[arg-type]
    message = _("%(name)s can no longer fetch forms or send submissions.", name=app_user.display_name)
    return _devices_page(project, message)


@console.get("/projects/<int:project_id>/devices/<int:app_user_id>")
def device_page(project_id: int, app_user_id: int) -> ResponseReturnValue:
    """One device: how it signs in, and the forms it may see (its form assignments)."""
    _user, project = _writable_project(project_id)
    session = db.session()
    app_user = devices.find_app_user(session, project, app_user_id)
    return render_template(
        "device.html",
        project=project,
        device=app_user,
        forms=[(f, form_title(f)) for f in _project_forms(project)],
        assigned=devices.assigned_form_ids(session, app_user),
        server_url=f"{server_base()}/v1/projects/{project.id}",
        saved=request.args.get("saved") == "1",
    )


@console.post("/projects/<int:project_id>/devices/<int:app_user_id>/forms")
@db.write_request
def assign_device_forms(project_id: int, app_user_id: int) -> ResponseReturnValue:
    """Make the device's assignments the forms ticked: each one added or removed as the API's
    ``POST|DELETE .../forms/{f}/assignments/app-user/{id}`` does (audited the same way)."""
    user, project = _writable_project(project_id)
    session = db.session()
    app_user = devices.find_app_user(session, project, app_user_id)
    if app_user.revoked_at is not None:
        raise errors.conflict(_("This device is revoked; create a new one."))
    wanted = {find_form(session, project.id, ref).id for ref in request.form.getlist("form")}
    held = devices.assigned_form_ids(session, app_user)
    for form in _project_forms(project):
        if form.id in wanted and form.id not in held:
            devices.assign_form(session, app_user, form, user)  # type: ignore[arg-type]
        elif form.id in held and form.id not in wanted:
            devices.unassign_form(session, app_user, form, user)  # type: ignore[arg-type]
    return redirect(url_for("console.device_page", project_id=project.id, app_user_id=app_user.id, saved=1))


@console.post("/projects/<int:project_id>/devices/sheet")
@db.write_request
def device_sheet(project_id: int) -> ResponseReturnValue:
    """N new devices named ``<prefix> 1`` … ``<prefix> N`` (numbers go on from the highest taken) and
    one printable page of their codes."""
    user, project = _writable_project(project_id)
    prefix = request.form.get("prefix", "").strip()
    try:
        count = int(request.form.get("count", ""))
    except ValueError:
        count = 0
    if not prefix or not 1 <= count <= MAX_SHEET:
        raise errors.bad_request(_("Give a name and a number of tablets from 1 to %(max)d.", max=MAX_SHEET))
    taken = set(db.session().scalars(select(AppUser.display_name).where(AppUser.project_id == project.id)))
    codes, n = [], 0
    while len(codes) < count:
        n += 1
        name = f"{prefix} {n}"
        if name in taken:
            continue
        app_user, token = devices.create_app_user(
            db.session(),
            project,
            name,
            realm=_realm(),
            actor=user,  # type: ignore[arg-type]
        )
        codes.append(issue_code(project, app_user, token))
    return render_template("device_sheet.html", project=project, codes=codes)
