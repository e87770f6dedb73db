"""``sarhad audit``: read the audit log (newest first), filtered as ``GET /v1/audits`` filters it."""

from __future__ import annotations

import datetime as dt
import json

import click

from server import audit
from server.api.audits import event_json
from server.cli import CliContext, pass_ctx
from server.models import AuditEvent


def _moment(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date or an ISO 8601 time") from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _line(event: AuditEvent) -> str:
    actor = (
        f"user:{event.actor_user_id}"
        if event.actor_user_id
        else f"device:{event.actor_app_user_id}"
        if event.actor_app_user_id
        else "-"
    )
    actee = f"{event.target_type}:{event.target_id}" if event.target_type else "-"
    details = json.dumps(event.details, ensure_ascii=False, sort_keys=True) if event.details else ""
    stamp = event.at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return "\t".join((stamp, event.action, actor, actee, details))


@click.command("audit")
@click.option(
    "--action",
    default=None,
    help="An action (form.update.publish) or a category: nonverbose, user, field_key, project, form, "
    "submission, dataset, entity.",
)
@click.option("--start", default=None, help="From this date or time (UTC when no zone), inclusive.")
@click.option("--end", default=None, help="Before this date or time (UTC when no zone).")
@click.option("--actor", "actor_id", type=int, default=None, help="Only what this web user (id) did.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="0: no limit.")
@click.option("--offset", type=click.IntRange(min=0), default=0)
@click.option("--json", "as_json", is_flag=True, help="One JSON array in the API's shape.")
@pass_ctx
def audit_command(
    ctx: CliContext,
    action: str | None,
    start: str | None,
    end: str | None,
    actor_id: int | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """The audit log, newest first: one line per event (time, action, actor, object, details, tab
    separated), or JSON as GET /v1/audits answers."""
    query = audit.AuditQuery(action=action, start=_moment(start), end=_moment(end), actor_user_id=actor_id)
    with ctx.read() as session:
        events = audit.find(session, query, limit=limit or None, offset=offset)
        if as_json:
            click.echo(json.dumps([event_json(e) for e in events], ensure_ascii=False, indent=1))
            return
        for event in events:
            click.echo(_line(event))


def register(main: click.Group) -> None:
    main.add_command(audit_command)
