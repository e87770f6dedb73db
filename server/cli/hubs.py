"""``sarhad hub create|list|revoke``: the credentials field hubs use to push to this central."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from server.cli import CliContext, pass_ctx
from server.models import Hub, SyncReceipt
from server.projects import find_project
from server.sync import keys
from server.sync.hubs import create_hub, find_hub, revoke_hub


@click.group("hub")
def hub_group() -> None:
    """Field hubs: the hub tokens that `sarhad-sync` uses to push to this server."""


@hub_group.command("create")
@click.argument("name")
@click.option(
    "--project",
    "projects",
    multiple=True,
    required=True,
    help="Project (id or name) the hub may push to; repeat for several.",
)
@pass_ctx
def create(ctx: CliContext, name: str, projects: tuple[str, ...]) -> None:
    """Create hub NAME and print its token (shown only this once)."""
    with ctx.write() as w:
        found = [find_project(w.session, ref) for ref in projects]
        hub, token = create_hub(w.session, name, found)
        click.echo(f"created hub {hub.id}: {hub.name} (projects: {', '.join(p.name for p in found)})")
    signing = keys.raw_public_b64(keys.signing_key(ctx.settings.data_dir))
    bundle = keys.raw_public_b64(keys.bundle_key(ctx.settings.data_dir))
    click.echo(f"token: {token}")
    click.echo("Give the token to the hub's coordinator (e.g. SARHAD_SYNC_TOKEN); it is not shown again.")
    click.echo(f"central's signing key (SARHAD_SYNC_CENTRAL_SIGNING_KEY, checks statements): {signing}")
    click.echo(f"central's bundle key (SARHAD_SYNC_CENTRAL_BUNDLE_KEY, for USB bundles): {bundle}")


@hub_group.command("list")
@pass_ctx
def list_(ctx: CliContext) -> None:
    """List hubs: id, name, state, projects, confirmed submissions, last contact."""
    with ctx.read() as session:
        counted = session.execute(select(SyncReceipt.hub_id, func.count()).group_by(SyncReceipt.hub_id))
        counts = {hub_id: n for hub_id, n in counted}
        for hub in session.scalars(select(Hub).order_by(Hub.id)):
            state = "revoked" if hub.revoked_at else "active"
            seen = hub.last_seen_at.isoformat(timespec="seconds") if hub.last_seen_at else "never"
            projects = ",".join(p.name for p in hub.projects)
            click.echo(
                f"{hub.id}\t{hub.name}\t{state}\t{projects}\t{counts.get(hub.id, 0)} confirmed\t{seen}"
            )


@hub_group.command("revoke")
@click.argument("hub")
@pass_ctx
def revoke(ctx: CliContext, hub: str) -> None:
    """Revoke HUB's token (id or name): it can no longer push. Create a new hub to re-issue."""
    with ctx.write() as w:
        found = find_hub(w.session, hub)
        changed = revoke_hub(w.session, found)
        click.echo(f"revoked hub {found.name}" if changed else f"hub {found.name} was already revoked")


def register(main: click.Group) -> None:
    main.add_command(hub_group)
