"""``sarhad forms publish|list``.

``publish`` takes XLSForms (.xlsx, .xls, .xlsm, .csv, .md) or XForms (.xml). Each file is converted
before its transaction starts (conversion can take a while and must not hold the database), then
published in a transaction of its own, so that one bad file does not stop the others; the command exits
1 when any file failed. Media files the form references (``jr://images/x.png``, CSV lookups...) are
taken from the same folder as the form file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import click
from sqlalchemy import select

from server.cli import CliContext, pass_ctx
from server.errors import Problem
from server.forms.publish import (
    FormSource,
    find_draft,
    publish,
    source_from_xform,
    source_from_xlsform,
)
from server.models import Form
from server.projects import find_project


def _read_source(ctx: CliContext, path: Path) -> FormSource:
    data = path.read_bytes()
    if path.suffix.lower() == ".xml":
        return source_from_xform(data, ctx.settings)
    return source_from_xlsform(data, ctx.settings, filename=path.name)


def _media_beside(path: Path, source: FormSource) -> dict[str, bytes]:
    """The referenced media found in the form file's folder (plain file names only: no paths)."""
    found = {}
    for name in source.info.media_names:
        if Path(name).name != name or name.startswith("."):
            continue
        candidate = path.parent / name
        if candidate.is_file():
            found[name] = candidate.read_bytes()
    return found


def _one_line(problem: Problem) -> str:
    where = ", ".join(f"{key} {problem.details[key]}" for key in ("sheet", "row") if key in problem.details)
    return f"{problem.message} ({where})" if where and "[row" not in problem.message else problem.message


@click.group("forms")
def forms_group() -> None:
    """Forms: publish XLSForms with their media and list them."""


@forms_group.command("publish")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@pass_ctx
def publish_command(ctx: CliContext, files: tuple[Path, ...], project_ref: str) -> None:
    """Publish each FILE (XLSForm or XForm XML) with the media files beside it."""
    if publish_files(ctx, files, project_ref):
        sys.exit(1)


def publish_files(ctx: CliContext, files: Iterable[Path], project_ref: str) -> int:
    """Publish each file in a transaction of its own, printing what happened; returns how many failed."""
    with ctx.read() as session:
        find_project(session, project_ref)  # a wrong project fails before any conversion
    failed = 0
    for path in files:
        try:
            source = _read_source(ctx, path)
            media = _media_beside(path, source)
            with ctx.write() as w:
                outcome = publish(w, find_project(w.session, project_ref), source, media, via="cli")
                lines = [outcome.message]
                lines += [f"  attached {name}" for name in outcome.attached_media]
                lines += [f"  warning: {text}" for text in outcome.warnings]
        except Problem as problem:
            failed += 1
            click.echo(f"error: {path}: {_one_line(problem)}", err=True)
            continue
        except OSError as exc:  # unreadable file or media: say which, go on with the others
            failed += 1
            click.echo(f"error: {path}: cannot read {exc.filename or 'the file'}: {exc.strerror}", err=True)
            continue
        click.echo("\n".join(lines))
    return failed


@forms_group.command("list")
@click.option("--project", "project_ref", required=True, help="Project id or name.")
@pass_ctx
def list_command(ctx: CliContext, project_ref: str) -> None:
    """List the project's forms: id, state, current version, media present, title."""
    with ctx.read() as session:
        project = find_project(session, project_ref)
        forms = session.scalars(
            select(Form).where(Form.project_id == project.id, Form.deleted_at.is_(None)).order_by(Form.id)
        ).all()
        if not forms:
            click.echo("no forms")
        for form in forms:
            current = form.current_version
            draft = find_draft(session, form)
            shown = current or draft
            version = (shown.version or "-") if shown else "-"
            media = (
                f"{sum(m.blob_sha256 is not None for m in shown.media)}/{len(shown.media)} media"
                if shown
                else ""
            )
            note = " (draft only)" if current is None else (" (+draft)" if draft else "")
            title = shown.title if shown else ""
            versions = len([v for v in form.versions if v.published_at is not None])
            columns = [form.xml_form_id, form.state, f"version {version}{note}", f"{versions} published"]
            click.echo("\t".join([*columns, media, title]))


def register(main: click.Group) -> None:
    main.add_command(forms_group)
