"""``sarhad project create|list``."""

from __future__ import annotations

import click
from sqlalchemy import select

from server.cli import CliContext, pass_ctx
from server.models import Project
from server.projects import create_project


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


def register(main: click.Group) -> None:
    main.add_command(project_group)
