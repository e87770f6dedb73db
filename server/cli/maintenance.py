"""``sarhad serve``, ``sarhad db upgrade`` and ``sarhad doctor``."""

from __future__ import annotations

import sys

import click

from server import migrate, serving
from server.backup import schedule
from server.cli import CliContext, pass_ctx
from server.doctor import examine


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 lets tablets on the local network connect.",
)
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@pass_ctx
def serve(ctx: CliContext, host: str, port: int) -> None:
    """Serve Sarhad on waitress (a field hub, a laptop, a Raspberry Pi). Upgrades the database first.

    At the centre, gunicorn behind nginx is the alternative (see the README).
    """
    migrate.upgrade(ctx.settings.sqlalchemy_url)
    ctx.database.recover_blobs()
    try:
        scheduler = schedule.start(ctx.app)  # backups every BACKUP_INTERVAL_HOURS when BACKUP_DIR is set
    except (OSError, ValueError) as why:
        raise click.ClickException(f"scheduled backups: {why}") from None
    if scheduler is not None:
        click.echo(f"backups every {ctx.settings.backup_interval_hours} h to {ctx.settings.backup_dir}")
    click.echo(f"Sarhad listening on http://{host}:{port}/ (Ctrl-C stops it)")
    serving.serve(ctx.app, host, port)


@click.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
@pass_ctx
def upgrade(ctx: CliContext, revision: str) -> None:
    """Create or migrate the database schema (safe to run again)."""
    migrate.upgrade(ctx.settings.sqlalchemy_url, revision)
    click.echo("database is up to date")


@click.command()
@click.option("--verify", is_flag=True, help="Also re-hash every stored file (slow on large stores).")
@pass_ctx
def doctor(ctx: CliContext, verify: bool) -> None:
    """Check that every blob row has its file and every file its row; exit 1 when not."""
    report = examine(ctx.database, verify=verify)
    rec = report.recovery
    click.echo(
        f"interrupted transactions: {rec.rolled_forward} file(s) completed, "
        f"{rec.rolled_back} discarded, {rec.in_use} still in progress"
    )
    click.echo(f"blobs: {report.blob_rows} row(s), {report.stored_files} file(s)")
    click.echo(f"attachments: {report.attachments_present} of {report.attachments_expected} present")
    for label, items in (
        ("missing file", report.missing),
        ("orphan file", report.orphans),
        ("corrupt file", report.corrupt),
    ):
        for sha in items:
            click.echo(f"{label}: {sha}")
    if report.healthy:
        click.echo("ok: rows and files agree")
    else:
        sys.exit(1)


def register(main: click.Group) -> None:
    main.add_command(serve)
    main.add_command(db_group)
    main.add_command(doctor)
