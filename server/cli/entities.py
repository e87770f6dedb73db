"""``sarhad entities``: an entity list for analysts (``export``, CSV or XLSX) and a donor report that
counts its entities by properties with small counts hidden (``report``). Both are audited
(``dataset.export``, ``dataset.report``)."""

from __future__ import annotations

from pathlib import Path

import click

from server.cli import CliContext, pass_ctx, write_file_atomically
from server.datasets.report_files import check_report_format, min_cell, render_report
from server.entities import exports, from_submissions
from server.entities.lists import find_entity_list
from server.projects import find_project


@click.group("entities")
def entities() -> None:
    """Entity lists (concerns, action plans...): export and donor reports."""


@entities.command("export")
@click.argument("list_name")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default=None, help="Default: from -o.")
@pass_ctx
def export(ctx: CliContext, list_name: str, project_ref: str, output: Path, fmt: str | None) -> None:
    """Write LIST_NAME's entities (as they are now) to a CSV or XLSX file."""
    fmt = check_report_format(fmt or output.suffix.lstrip(".").lower())
    with ctx.write() as w:
        entity_list = find_entity_list(w.session, find_project(w.session, project_ref).id, list_name)
        header, rows = exports.table(w.session, entity_list)
        exports.record(w.session, entity_list, "dataset.export", None, format=fmt, via="cli", rows=len(rows))
    write_file_atomically(output, [exports.render_table(header, rows, fmt)])
    click.echo(f"{len(rows)} entities of {list_name} written to {output}")


@entities.command("report")
@click.argument("list_name")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@click.option("--rows", required=True, help="Properties to count by, e.g. district.")
@click.option("--cols", default=None, help="One property whose values are the columns, e.g. status.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default=None, help="Default: from -o.")
@click.option("--min-cell", "min_cell_asked", type=int, default=None, help="Hide counts below this.")
@pass_ctx
def report(
    ctx: CliContext,
    list_name: str,
    project_ref: str,
    rows: str,
    cols: str | None,
    output: Path,
    fmt: str | None,
    min_cell_asked: int | None,
) -> None:
    """Count LIST_NAME's entities by properties for donors, hiding counts that could single someone out."""
    fmt = check_report_format(fmt or output.suffix.lstrip(".").lower())
    k = min_cell(ctx.settings.report_min_cell, min_cell_asked)
    by = tuple(r.strip() for r in rows.split(",") if r.strip())
    with ctx.write() as w:
        entity_list = find_entity_list(w.session, find_project(w.session, project_ref).id, list_name)
        made = exports.report(w.session, entity_list, by, cols.strip() if cols else None, k)
        exports.record(
            w.session, entity_list, "dataset.report", None, rows=list(by), cols=cols, min_cell=k, via="cli"
        )
    write_file_atomically(output, [render_report(made, fmt)])
    click.echo(
        f"report of {list_name} written to {output} ({made.grid[-1][-1]} entities, "
        f"{len(made.row_labels)} rows, {len(made.hidden)} counts hidden, k={k})"
    )


@entities.command("held")
@click.argument("list_name")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@click.option(
    "--apply-anyway",
    is_flag=True,
    help="Apply them on top of the current versions, each flagged as a soft conflict.",
)
@pass_ctx
def held_updates(ctx: CliContext, list_name: str, project_ref: str, apply_anyway: bool) -> None:
    """List the updates from submissions held until the version they were made against arrives."""
    with ctx.write() as w:
        entity_list = find_entity_list(w.session, find_project(w.session, project_ref).id, list_name)
        for row in from_submissions.held(w.session, entity_list):
            click.echo(
                f"{row.entity_uuid}  base version {row.base_version}  branch {row.branch_id}  "
                f"held since {row.held_at:%Y-%m-%d %H:%M} UTC"
            )
        if apply_anyway:
            applied, left = from_submissions.force_held(w.session, entity_list, None)
            click.echo(f"applied {applied}; still held (their entity is not here): {left}")


def register(main: click.Group) -> None:
    main.add_command(entities)


__all__ = ["entities", "register"]
