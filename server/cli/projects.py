"""``sarhad project create|list|encrypt``."""

from __future__ import annotations

import click
from sqlalchemy import select

from server.cli import CliContext, pass_ctx
from server.cli.users import read_password
from server.models import Project
from server.project_keys import enable_managed_encryption
from server.projects import create_project, find_project


@click.group("project")
def project_group() -> None:
    """Projects: the container of forms, app users and submissions."""


@project_group.command("create")
@click.argument("name")
@click.option("--description", default=None, help="A sentence about the project.")
@pass_ctx
def create(ctx: CliContext, name: str, description: str | None) -> None:
    """Create a project called NAME and print its id."""
    with ctx.write() as w:
        project = create_project(w.session, name, description)
        click.echo(f"created project {project.id}: {project.name}")


@project_group.command("list")
@pass_ctx
def list_(ctx: CliContext) -> None:
    """List projects with their ids."""
    with ctx.read() as session:
        for project in session.scalars(select(Project).order_by(Project.id)):
            flag = " (archived)" if project.archived else ""
            click.echo(f"{project.id}\t{project.name}{flag}")


@project_group.command("encrypt")
@click.argument("project_ref")
@click.option("--hint", default=None, help="A reminder of the passphrase, shown beside the key (not secret).")
@pass_ctx
def encrypt(ctx: CliContext, project_ref: str, hint: str | None) -> None:
    """Turn on managed encryption for a project (for good): reads the passphrase from standard input,
    makes the project's key pair and publishes every form again with its public key."""
    passphrase = read_password("Passphrase (at least 10 characters; it cannot be recovered)")
    with ctx.write() as w:
        project = find_project(w.session, project_ref)
        key = enable_managed_encryption(w.session, project, passphrase, hint, None, via="cli")
        forms = len(project.forms)
        click.echo(
            f"project {project.id} ({project.name}) is encrypted with key {key.id}; {forms} form(s) "
            "published again with its public key. Without the passphrase its new submissions cannot be read."
        )


def register(main: click.Group) -> None:
    main.add_command(project_group)
