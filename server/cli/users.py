"""``sarhad user create`` and ``sarhad user unlock``."""

from __future__ import annotations

import sys

import click

from server import signin_limits
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


@user_group.command("unlock")
@click.argument("email", required=False)
@click.option("--address", default=None, help="Also (or only) lift the lock of this client address.")
@pass_ctx
def unlock(ctx: CliContext, email: str | None, address: str | None) -> None:
    """Lift a sign-in lock at once: forget the failed sign-ins of EMAIL and/or of a client address.

    After 10 failures in 5 minutes an account or an address is refused (429) until the window passes.
    """
    if not email and not address:
        raise click.UsageError("name an e-mail address, --address ADDRESS, or both")
    with ctx.write() as w:
        removed = signin_limits.unlock(w.session, email=email, address=address)
    who = " and ".join(x for x in (email, address and f"address {address}") if x)
    click.echo(f"unlocked {who}: {removed} failed attempt(s) forgotten")


def register(main: click.Group) -> None:
    main.add_command(user_group)
