"""``sarhad user create``."""

from __future__ import annotations

import sys

import click

from server.cli import CliContext, pass_ctx
from server.projects import find_project
from server.users import create_user


def read_password(prompt: str = "Password") -> str:
    """One line from standard input; asked twice when a person types it at a terminal."""
    if sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@click.group("user")
def user_group() -> None:
    """Web users: administrators, coordinators, analysts."""


@user_group.command("create")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice(["admin", "coordinator", "analyst"]),
    required=True,
    help="admin without --project is a site administrator.",
)
@click.option("--project", "project_ref", default=None, help="Project id or name the role applies to.")
@click.option("--name", "display_name", default=None, help="Display name (default: the e-mail's user part).")
@pass_ctx
def create(ctx: CliContext, email: str, role: str, project_ref: str | None, display_name: str | None) -> None:
    """Create a web user. The password is read from standard input."""
    password = read_password()
    with ctx.write() as w:
        project = find_project(w.session, project_ref) if project_ref else None
        user = create_user(w.session, email, password, role, project, display_name)
        where = f"in project {project.name}" if project else "for every project"
        click.echo(f"created user {user.id}: {user.email} ({role} {where})")


def register(main: click.Group) -> None:
    main.add_command(user_group)
