"""Devices (app users): create one and show its Collect QR code, a printable sheet of codes for a
training day, revoke, rotate. The same rules and code as ``/v1/projects/{p}/app-users``.

A device's token is shown only once (the database keeps its hash), so its QR code can exist only in the
answer that created or rotated it. The code is made here (segno) and put in the page as a ``data:`` PNG
image: it is never a URL that a log, a proxy or the browser's history could keep.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import segno
from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from server import auth, config, db, devices, errors, qr
from server.api.app_users import WRITERS
from server.console import console
from server.console.session import require_signed_in
from server.models import AppUser, Project
from server.projects import find_project

MAX_SHEET = 60  # codes on one printed sheet request


@dataclass(frozen=True)
class IssuedCode:
    """A device with the Collect settings of its fresh token, ready to show."""

    app_user: AppUser
    server_url: str
    png_data_uri: str


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


@console.get("/projects/<int:project_id>/devices")
def devices_page(project_id: int) -> ResponseReturnValue:
    _user, project = _writable_project(project_id)
    rows = db.session().scalars(select(AppUser).where(AppUser.project_id == project.id).order_by(AppUser.id))
    return render_template("devices.html", project=project, devices=list(rows), max_sheet=MAX_SHEET)


@console.post("/projects/<int:project_id>/devices")
@db.write_request
def create_device(project_id: int) -> ResponseReturnValue:
    user, project = _writable_project(project_id)
    app_user, token = devices.create_app_user(
        db.session(),
        project,
        request.form.get("name", ""),
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
    rows = db.session().scalars(select(AppUser).where(AppUser.project_id == project.id).order_by(AppUser.id))
    message = _("%(name)s can no longer fetch forms or send submissions.", name=app_user.display_name)
    return render_template(
        "devices.html", project=project, devices=list(rows), max_sheet=MAX_SHEET, message=message
    )


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
