"""``sarhad quickstart``: everything a newcomer needs, then serve (what ``scripts/run`` calls).

Each step is idempotent, so running it again keeps the store: the project and the administrator are
created once, forms already published are left as they are, and only the demo tablet's token is renewed
(tokens are stored hashed, so the only way to show a QR code again is to issue a new one).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import click
from sqlalchemy import select

from server import migrate, qr, serving
from server.cli import CliContext, pass_ctx
from server.cli.app_users import show_collect_settings
from server.cli.forms import publish_files
from server.errors import Problem
from server.models import Project, User
from server.projects import create_project
from server.users import create_user

DEMO_ADMIN = "admin@sarhad.local"
DEMO_DEVICE = "demo-tablet"


def _ensure_project(ctx: CliContext, name: str) -> None:
    with ctx.write() as w:
        if w.session.scalar(select(Project).where(Project.name == name)) is None:
            create_project(w.session, name, "Created by sarhad quickstart")
            click.echo(f"created project {name!r}")


def _ensure_admin(ctx: CliContext) -> None:
    with ctx.write() as w:
        if w.session.scalar(select(User).where(User.is_site_admin.is_(True))) is not None:
            return
        password = secrets.token_urlsafe(12)
        create_user(w.session, DEMO_ADMIN, password, "admin", display_name="Administrator")
    click.echo(f"created administrator {DEMO_ADMIN} with password {password}  (shown once: note it)")


@click.command()
@click.option(
    "--host",
    default="0.0.0.0",
    show_default=True,
    help="Address to listen on; the default lets tablets on the local network connect.",
)
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--project",
    "project_name",
    default="Demo",
    show_default=True,
    help="Project to create (if absent) and publish the forms into.",
)
@click.option(
    "--forms",
    "forms_dir",
    default="forms",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of XLSForms to publish.",
)
@click.option("--no-serve", is_flag=True, help="Set everything up, print the QR code, but do not serve.")
@pass_ctx
def quickstart(
    ctx: CliContext, host: str, port: int, project_name: str, forms_dir: Path, no_serve: bool
) -> None:
    """Migrate, create a project and an administrator, publish forms/, issue a demo QR code, serve."""
    migrate.upgrade(ctx.settings.sqlalchemy_url)
    ctx.database.recover_blobs()
    _ensure_project(ctx, project_name)
    _ensure_admin(ctx)

    files = sorted(forms_dir.glob("*.xlsx")) if forms_dir.is_dir() else []
    if files:
        click.echo(f"publishing {len(files)} form(s) from {forms_dir}/")
        if publish_files(ctx, files, project_name):
            click.echo("some forms did not publish (see above); the others are served", err=True)
    else:
        click.echo(f"no XLSForms in {forms_dir}/: nothing to publish")

    try:
        show_collect_settings(ctx, DEMO_DEVICE, project_name, port=port, create_if_missing=True)
    except Problem as problem:
        click.echo(f"error: could not issue the demo QR code: {problem.message}", err=True)

    # The console puts the address it was opened at into the QR codes of new devices (unless
    # SARHAD_BASE_URL says otherwise): print the one tablets on the network can reach.
    if ctx.settings.base_url:
        console_url = ctx.settings.base_url.rstrip("/")
    elif host in ("0.0.0.0", ""):
        console_url = f"http://{qr.lan_address()}:{port}"
    else:
        console_url = f"http://{host}:{port}"
    click.echo(f"Console: open {console_url}/ in a browser and sign in as {DEMO_ADMIN}")
    if no_serve:
        return
    click.echo(f"Sarhad listening on http://{host}:{port}/ (Ctrl-C stops it)")
    serving.serve(ctx.app, host, port)


def register(main: click.Group) -> None:
    main.add_command(quickstart)
