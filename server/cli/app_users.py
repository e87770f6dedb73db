"""``sarhad app-user create|list|revoke|rotate``: devices and the QR codes that configure Collect."""

from __future__ import annotations

import re
from pathlib import Path

import click
from sqlalchemy import select

from server import devices, qr
from server.cli import CliContext, pass_ctx
from server.cli.users import read_password
from server.models import AppUser, Project
from server.projects import find_project


def _server_base(ctx: CliContext, base_url: str | None, port: int) -> str:
    if base_url:
        return base_url.rstrip("/")
    if ctx.settings.base_url:
        return ctx.settings.base_url.rstrip("/")
    return f"http://{qr.lan_address()}:{port}"


def _default_png(ctx: CliContext, project: Project, name: str) -> Path:
    safe = re.sub(r"[^\w.-]+", "_", f"{project.name}-{name}")  # \w keeps Cyrillic letters
    return ctx.settings.data_dir / "qr" / f"{safe}.png"


def print_collect_settings(
    ctx: CliContext,
    project: Project,
    app_user: AppUser,
    token: str,
    *,
    base_url: str | None = None,
    port: int = 8080,
    png: Path | None = None,
) -> None:
    """Print the Collect server URL and QR code and save the PNG. With a password the code carries the
    project URL and username (never the password); otherwise the token URL."""
    base = _server_base(ctx, base_url, port)
    if app_user.digest_ha1 is not None:
        url = f"{base}/v1/projects/{project.id}"
        payload = qr.collect_settings_payload(url, project.name, username=app_user.display_name)
        click.echo(f"Collect server URL: {url}  (username {app_user.display_name!r}, Digest)")
    else:
        url = f"{base}/v1/key/{token}/projects/{project.id}"
        payload = qr.collect_settings_payload(url, project.name)
        click.echo(f"Collect server URL: {url}")
    qr.print_qr(payload)
    path = png or _default_png(ctx, project, app_user.display_name)
    qr.save_qr_png(payload, path)
    click.echo(f"QR code saved as {path}")


def show_collect_settings(
    ctx: CliContext, name: str, project_ref: str, *, port: int = 8080, create_if_missing: bool = False
) -> None:
    """Issue a fresh token for app user NAME (creating it when asked) and show its QR code."""
    with ctx.write() as w:
        project = find_project(w.session, project_ref)
        existing = w.session.scalar(
            select(AppUser).where(AppUser.project_id == project.id, AppUser.display_name == name)
        )
        if existing is None and create_if_missing:
            app_user, token = devices.create_app_user(
                w.session, project, name, realm=ctx.settings.digest_realm
            )
        else:
            app_user = devices.find_app_user(w.session, project, name)
            token = devices.rotate_token(w.session, app_user)
    print_collect_settings(ctx, project, app_user, token, port=port)


_BASE_URL_HELP = (
    "Server URL the tablet uses (default: SARHAD_BASE_URL, else http://<this machine's LAN address>:8080)."
)


@click.group("app-user")
def app_user_group() -> None:
    """App users: one per tablet or facilitator, configured in Collect by a QR code.

    \b
    A tablet signs in by the long secret key inside its server URL (what the QR code carries); with
    --with-password it may also sign in on a hub's local network by username (the app user's name) and
    password (HTTP Digest), and its QR code then carries the project URL and username, never the password.
    The server URL in the code is --base-url, else base_url from the settings (SARHAD_BASE_URL), else
    http://<this machine's address on the local network>:8080; that address is the one the machine would
    use to reach other hosts, found without sending anything.
    """


@app_user_group.command("create")
@click.argument("name")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@click.option(
    "--with-password",
    is_flag=True,
    help="Also let the device sign in by username and password (Digest), read from stdin.",
)
@click.option(
    "--qr-png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to save the QR code (default: DATA_DIR/qr/<project>-<name>.png).",
)
@click.option("--base-url", default=None, help=_BASE_URL_HELP)
@pass_ctx
def create(
    ctx: CliContext,
    name: str,
    project_ref: str,
    with_password: bool,
    qr_png: Path | None,
    base_url: str | None,
) -> None:
    """Create app user NAME and print its Collect URL and QR code."""
    password = read_password("Device password") if with_password else None
    with ctx.write() as w:
        project = find_project(w.session, project_ref)
        app_user, token = devices.create_app_user(
            w.session, project, name, password=password, realm=ctx.settings.digest_realm
        )
    click.echo(f"created app user {app_user.id}: {app_user.display_name}")
    print_collect_settings(ctx, project, app_user, token, base_url=base_url, png=qr_png)


@app_user_group.command("list")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@pass_ctx
def list_(ctx: CliContext, project_ref: str) -> None:
    """List the project's app users: id, name, sign-in, state."""
    with ctx.read() as session:
        project = find_project(session, project_ref)
        users = session.scalars(select(AppUser).where(AppUser.project_id == project.id).order_by(AppUser.id))
        for u in users:
            how = "token+password" if u.digest_ha1 else "token"
            state = f"revoked {u.revoked_at:%Y-%m-%d}" if u.revoked_at else "active"
            click.echo(f"{u.id}\t{u.display_name}\t{how}\t{state}")


@app_user_group.command("revoke")
@click.argument("ref")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@pass_ctx
def revoke(ctx: CliContext, ref: str, project_ref: str) -> None:
    """Revoke app user REF (name or id): its device can no longer list forms or submit."""
    with ctx.write() as w:
        app_user = devices.find_app_user(w.session, find_project(w.session, project_ref), ref)
        devices.revoke_app_user(w.session, app_user)
    click.echo(f"revoked app user {app_user.id}: {app_user.display_name}")


@app_user_group.command("rotate")
@click.argument("ref")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@click.option(
    "--qr-png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to save the new QR code.",
)
@click.option("--base-url", default=None, help=_BASE_URL_HELP)
@pass_ctx
def rotate(ctx: CliContext, ref: str, project_ref: str, qr_png: Path | None, base_url: str | None) -> None:
    """Issue a new token (and QR code) for REF; the old one stops working at once."""
    with ctx.write() as w:
        project = find_project(w.session, project_ref)
        app_user = devices.find_app_user(w.session, project, ref)
        token = devices.rotate_token(w.session, app_user)
    print_collect_settings(ctx, project, app_user, token, base_url=base_url, png=qr_png)


def register(main: click.Group) -> None:
    main.add_command(app_user_group)
