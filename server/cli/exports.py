"""``sarhad export``: a form's dataset to a file (CSV zip, XLSX, JSON Lines, GeoJSON).

The command line is the operator's: by default it exports raw values (it runs on the server, with the
database in reach anyway). ``--as EMAIL`` exports what that web user would get over HTTP (their role's
redaction) and records them as the actor; ``--role analyst|coordinator`` applies that role's redaction
without naming a user. Every export is in the audit log (``form.submission.export``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import click

from server import errors
from server.auth import find_active_user
from server.cli import CliContext, pass_ctx, write_file_atomically
from server.cli.passphrases import PASSPHRASE_FILE_OPTION, unlock_from_file
from server.datasets import Filters, parse_bound
from server.datasets.codebook import CODEBOOK_HEADER, CONFLICT_HEADER, codebook_lines, conflict_lines
from server.datasets.export import (
    FORMATS,
    check_export,
    check_language,
    find_format,
    record_export,
    schema_for,
    stream_export,
)
from server.datasets.redact import RAW_OPERATOR, Access, access_for, access_for_role
from server.datasets.tables import ExportOptions, build_tables
from server.forms.publish import find_form
from server.models import ReviewState, User
from server.projects import find_project

EXPORT_FORMATS = ("csv.zip", "xlsx", "jsonl", "geojson")


def _format_from_name(output: Path) -> str | None:
    name = output.name.lower()
    for fmt in EXPORT_FORMATS:
        if name.endswith("." + fmt):
            return fmt
    return None


@click.command("export")
@click.argument("form_id")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@click.option(
    "--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=None, help="Default: from -o's suffix."
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--lang", type=click.Choice(["en", "tg", "ru"]), default=None, help="Language of labels.")
@click.option("--labels", is_flag=True, help="Choice labels instead of codes.")
@click.option("--label-headers", is_flag=True, help="Question labels as column names.")
@click.option("--since", default=None, help="Received on or after (YYYY-MM-DD or ISO 8601).")
@click.option("--until", default=None, help="Received up to (a date includes that day).")
@click.option(
    "--review-state",
    "review_states",
    multiple=True,
    type=click.Choice([s.value for s in ReviewState]),
    help="Only these review states (repeatable).",
)
@click.option("--include-rejected", is_flag=True, help="Keep rejected submissions.")
@click.option("--include-deleted", is_flag=True, help="Keep deleted submissions.")
@click.option("--include-test", is_flag=True, help="Keep submissions of test devices and test app users.")
@click.option("--no-attachments", is_flag=True, help="CSV zip without the media/ folder.")
@click.option("--split-select-multiples", is_flag=True, help="One 1/0 column per choice seen.")
@click.option("--as", "as_email", default=None, help="Export as this web user would get it (redaction).")
@click.option(
    "--role",
    type=click.Choice(["analyst", "coordinator"]),
    default=None,
    help="Apply this role's redaction (the operator is raw otherwise).",
)
@PASSPHRASE_FILE_OPTION
@pass_ctx
def export(
    ctx: CliContext,
    form_id: str,
    project_ref: str,
    fmt: str | None,
    output: Path,
    lang: str | None,
    labels: bool,
    label_headers: bool,
    since: str | None,
    until: str | None,
    review_states: tuple[str, ...],
    include_rejected: bool,
    include_deleted: bool,
    include_test: bool,
    no_attachments: bool,
    split_select_multiples: bool,
    as_email: str | None,
    role: str | None,
    passphrase_file: Path | None,
) -> None:
    """Export FORM_ID's submissions with the cleaning pipeline, labels and a codebook."""
    fmt = fmt or _format_from_name(output)
    if fmt is None:
        raise errors.bad_request("Give --format (csv.zip, xlsx, jsonl or geojson) or an -o with that suffix.")
    if as_email and role:
        raise errors.bad_request("Give --as or --role, not both.")
    export_format = find_format(fmt)
    filters = Filters(
        since=parse_bound(since, name="since"),
        until=parse_bound(until, end=True, name="until"),
        review_states=review_states,
        include_rejected=include_rejected,
        include_deleted=include_deleted,
        include_test=include_test,
    )
    database = ctx.database
    with ctx.write() as w:
        session = w.session
        project = find_project(session, project_ref)
        form = find_form(session, project.id, form_id)
        actor: User | None = None
        access: Access = RAW_OPERATOR
        if as_email:
            actor = find_active_user(session, as_email)
            if actor is None:
                raise errors.not_found(f"There is no web user {as_email!r}.")
            access = access_for(session, actor, project)
        elif role:
            access = access_for_role(project, role)
        opts = ExportOptions(
            access=access,
            filters=filters,
            clean=True,
            lang=check_language(lang),
            labels=labels,
            label_headers=label_headers,
            split_select_multiples=split_select_multiples,
            attachments=not no_attachments,
        )
        check_export(session, database, form, export_format, opts)
        keys, key_ids = unlock_from_file(session, project, passphrase_file)
        record_export(session, form, export_format, opts, actor, via="cli", key_ids=key_ids)
        form_pk = form.id
    with ctx.app.app_context():
        write_file_atomically(output, stream_export(database, form_pk, export_format, opts, keys))
        sidecars = _write_sidecars(ctx, form_pk, opts, output) if fmt in ("jsonl", "geojson") else []
    size = output.stat().st_size
    who = f"as {as_email} ({access.level})" if as_email else f"{access.role} ({access.level})"
    click.echo(f"exported {form_id} to {output} ({size} bytes, {fmt}, {who})")
    for path in sidecars:
        click.echo(f"  with {path}")


def _write_sidecars(ctx: CliContext, form_pk: int, opts: ExportOptions, output: Path) -> list[Path]:
    """JSON Lines and GeoJSON hold one table: their codebook and conflicts go beside them as CSV."""
    from server.models import Form

    codebook = output.with_name(output.name + ".codebook.csv")
    conflicts = output.with_name(output.name + ".conflicts.csv")
    with ctx.database.read() as session:
        form = session.get(Form, form_pk)
        assert form is not None
        tables = build_tables(schema_for(session, ctx.database, form, opts), opts)
        with codebook.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(CODEBOOK_HEADER)
            writer.writerows(codebook_lines(tables, opts.access))
        with conflicts.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(CONFLICT_HEADER)
            writer.writerows(conflict_lines(session, form))
    return [codebook, conflicts]


def register(main: click.Group) -> None:
    main.add_command(export)


__all__ = ["FORMATS", "export", "register"]
