"""``sarhad report``: a donor report (counts by a few questions, small counts hidden) to a CSV or XLSX
file. It holds no personal data; it is in the audit log (``form.submission.report``) like every export."""

from __future__ import annotations

from pathlib import Path

import click

from server.cli import CliContext, pass_ctx, write_file_atomically
from server.cli.passphrases import PASSPHRASE_FILE_OPTION, unlock_from_file
from server.datasets import Filters, parse_bound
from server.datasets.export import check_language
from server.datasets.report import ReportRequest, split_dimensions
from server.datasets.report_files import REPORT_FORMATS, check_report_format, min_cell, produce_report
from server.forms.publish import find_form
from server.projects import find_project


@click.command("report")
@click.argument("form_id")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@click.option("--rows", required=True, help="Questions to count by, e.g. region,district or age:0-17,18-.")
@click.option("--cols", default=None, help="One question whose categories are the columns, e.g. sex.")
@click.option(
    "--format", "fmt", type=click.Choice(sorted(REPORT_FORMATS)), default=None, help="Default: from -o."
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--lang", type=click.Choice(["en", "tg", "ru"]), default=None, help="Language of labels.")
@click.option("--since", default=None, help="Received on or after (YYYY-MM-DD or ISO 8601).")
@click.option("--until", default=None, help="Received up to (a date includes that day).")
@click.option(
    "--min-cell",
    "min_cell_asked",
    type=int,
    default=None,
    help="Hide counts below this (>= SARHAD_REPORT_MIN_CELL).",
)
@PASSPHRASE_FILE_OPTION
@pass_ctx
def report(
    ctx: CliContext,
    form_id: str,
    project_ref: str,
    rows: str,
    cols: str | None,
    fmt: str | None,
    output: Path,
    lang: str | None,
    since: str | None,
    until: str | None,
    min_cell_asked: int | None,
    passphrase_file: Path | None,
) -> None:
    """Count FORM_ID's submissions by questions for donors, hiding counts that could single someone out."""
    fmt = check_report_format(fmt or output.suffix.lstrip(".").lower())
    request = ReportRequest(
        rows=split_dimensions(rows),
        cols=cols.strip() if cols else None,
        lang=check_language(lang),
        filters=Filters(
            since=parse_bound(since, name="since"), until=parse_bound(until, end=True, name="until")
        ),
        min_cell=min_cell(ctx.settings.report_min_cell, min_cell_asked),
    )
    with ctx.read() as session:
        project = find_project(session, project_ref)
        form_pk = find_form(session, project.id, form_id).id
        keys, key_ids = unlock_from_file(session, project, passphrase_file)
    with ctx.app.app_context():
        result, data = produce_report(
            ctx.database, form_pk, request, fmt, actor=None, via="cli", keys=keys, key_ids=key_ids
        )
    write_file_atomically(output, [data])
    counted = result.grid[-1][-1]
    click.echo(
        f"report of {form_id} written to {output} ({counted} submissions, {len(result.row_labels)} rows, "
        f"{len(result.hidden)} counts hidden, k={request.min_cell})"
    )


def register(main: click.Group) -> None:
    main.add_command(report)


__all__ = ["register", "report"]
