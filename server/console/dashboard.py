"""A project's dashboard: charts of its submissions, counted by the donor reports' code.

Every count comes from :func:`server.datasets.report.build_reports` (or ``sum_numbers`` for people
counted in a focus group), so it is cleaned, filtered (current versions; no rejected, deleted or test
submissions) and read through the one reader exactly as a donor report is. For a role that may only see
aggregates (an analyst) every table is suppressed as a donor report is, group disclosure included
(:mod:`server.datasets.suppression`), with ``SARHAD_REPORT_MIN_CELL``; administrators and coordinators,
who may read the submissions themselves, see every count.

Charts (:mod:`server.svg_charts`) are drawn on the server as SVG and inlined; each can be downloaded as
SVG, as CSV (its numbers) and, where the browser runs the page's small script, as PNG (the browser
rasterises the SVG: the server needs no image library).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import auth, config, db, errors
from server.console import console
from server.console.session import require_signed_in
from server.datasets import Filters, parse_bound
from server.datasets.report import MISSING, OTHER, Report, ReportRequest, build_reports, sum_numbers
from server.datasets.schema import FormSchema, blob_media_reader, load_schema
from server.datasets.suppression import suppress_grid
from server.models import Form, Role
from server.projects import find_project
from server.svg_charts import HIDDEN, Chart, render

# Roles that see every count; any other role of the project sees suppressed aggregates only.
FULL_COUNTS_ROLES = (Role.ADMIN, Role.COORDINATOR)
SAFETY, YOUTH, GROUPS = "safety_concerns", "youth_consultation", "focus_group"
TRUST_ITEMS = ("trust_fair", "trust_report", "trust_women", "trust_respond", "trust_honest")
SAFE_ITEMS = ("safe_day", "safe_night", "safe_school_work", "safe_transport", "safe_online", "safe_border")
# Focus-group participants: (sex, age band) → the integer question that counts them.
PARTICIPANTS = {
    ("women", "14_17"): "women_14_17",
    ("women", "18_29"): "women_18_29",
    ("women", "30plus"): "women_30plus",
    ("men", "14_17"): "men_14_17",
    ("men", "18_29"): "men_18_29",
    ("men", "30plus"): "men_30plus",
}
MAX_DAYS = 92  # the daily chart draws the last 92 days of the range; its CSV has every day


Spec = tuple[tuple[str, ...], str | None]  # a report's rows and columns
SAFETY_SPECS: list[Spec] = [(("region",), "severity"), (("district",), None), (("category",), "severity")]
YOUTH_SPECS: list[Spec] = [((item,), None) for item in (*TRUST_ITEMS, *SAFE_ITEMS)]
DAILY: Spec = (("period:day",), None)


@dataclass
class Board:
    """One request's dashboard: whose it is, which submissions, and the project's published forms."""

    session: Session
    project_id: int
    lang: str
    suppress: bool
    min_cell: int
    filters: Filters
    forms: dict[str, tuple[Form, FormSchema]] = field(default_factory=dict)
    planned: dict[str, list[Spec]] = field(default_factory=dict)
    done: dict[tuple[str, Spec], Report] = field(default_factory=dict)

    def request(self, rows: tuple[str, ...], cols: str | None = None) -> ReportRequest:
        return ReportRequest(rows, cols, self.lang, self.filters, self.min_cell, self.suppress)

    def reports(self, xml_form_id: str, specs: list[Spec]) -> list[Report] | None:
        """The reports of one form, or None when the project has no such form or the form lacks one of
        the questions. Counted in one pass over the form's submissions with whatever else was planned
        for it (:meth:`plan`)."""
        if xml_form_id not in self.forms:
            return None
        form, schema = self.forms[xml_form_id]
        names = {f.name for f in schema.fields} | {"period"}
        if not all(_questions(spec) <= names for spec in specs):
            return None
        todo = [
            spec
            for spec in {*self.planned.pop(xml_form_id, []), *specs}
            if (xml_form_id, spec) not in self.done
        ]
        todo = [spec for spec in todo if _questions(spec) <= names]
        if todo:
            counted = build_reports(self.session, form, schema, [self.request(*spec) for spec in todo])
            self.done.update(
                {(xml_form_id, spec): report for spec, report in zip(todo, counted, strict=True)}
            )
        return [self.done[xml_form_id, spec] for spec in specs]

    def plan(self, xml_form_id: str, specs: list[Spec]) -> None:
        """Reports to count in the same pass as the first :meth:`reports` call for this form."""
        self.planned.setdefault(xml_form_id, []).extend(specs)


def _questions(spec: Spec) -> set[str]:
    rows, cols = spec
    return {part.split(":")[0] for part in (*rows, *([cols] if cols else []))}


def _board(project_id: int) -> Board:
    user = require_signed_in()
    auth.require_project_role(project_id)
    session = db.session()
    project = find_project(session, project_id)
    role = auth.project_role(user, project_id)
    since = parse_bound(request.args.get("since"), name="since")
    until = parse_bound(request.args.get("until"), end=True, name="until")
    if since and until and until <= since:
        raise errors.bad_request(_("The end date must come after the start date."))
    board = Board(
        session=session,
        project_id=project.id,
        lang=str(get_locale() or "en"),
        suppress=role not in FULL_COUNTS_ROLES,
        min_cell=config.settings().report_min_cell,
        filters=Filters(since=since, until=until),
    )
    media = blob_media_reader(session, db.database().blobs)
    forms = session.scalars(
        select(Form).where(Form.project_id == project.id, Form.deleted_at.is_(None)).order_by(Form.id)
    )
    for form in forms:
        if form.current_version is not None:
            board.forms[form.xml_form_id] = (form, load_schema(session, form, media=media))
    return board


# ------------------------------------------------------------------------------------------ charts


def _label(key: str, label: str) -> str:
    return {MISSING: _("No answer"), OTHER: _("Other answer")}.get(key, label)


def _stacked(key: str, title: str, description: str, report: Report, *, ordered: bool = False) -> Chart:
    """A cross-table report as stacked bars: its rows are bars, its columns the segments."""
    rows = [
        r
        for r in range(len(report.row_labels))
        if report.grid[r][-1] or (r, len(report.grid[r]) - 1) in report.hidden
    ]
    return Chart(
        key=key,
        title=title,
        kind="stacked",
        description=description,
        categories=[" / ".join(report.row_labels[r]) for r in rows],
        series=[_label(label, label) for label in report.col_labels],
        values=[[_cell(report, r, c) for c in range(len(report.col_labels))] for r in rows],
        totals=[_cell(report, r, len(report.col_labels)) for r in rows],
        # Ordered columns (severity): the form's choices go light to dark, "no answer" and others grey.
        ordinal=sum(label not in (MISSING, OTHER) for label in report.col_labels) if ordered else 0,
    )


def _cell(report: Report, r: int, c: int) -> int | None:
    value = report.cell(r, c)
    return value if isinstance(value, int) else None


def _bars(key: str, title: str, description: str, report: Report) -> Chart:
    """A one-column report as bars, leaving out the categories nobody chose (a long list of districts);
    a hidden count is always drawn (as [c]), even a hidden zero, or leaving it out would tell it."""
    rows = [r for r in range(len(report.row_labels)) if report.grid[r][0] or (r, 0) in report.hidden]
    return Chart(
        key=key,
        title=title,
        kind="bars",
        description=description,
        categories=[_label(report.row_labels[r][0], report.row_labels[r][0]) for r in rows],
        series=[_("Count")],
        values=[[_cell(report, r, 0)] for r in rows],
        totals=[_cell(report, r, 0) for r in rows],
    )


def _scale(key: str, title: str, description: str, reports: list[Report]) -> Chart:
    """Several questions on one scale (one one-column report each) as 100% stacked bars, one per
    question, segments in the scale's order (the choices off the scale and "no answer" last)."""
    labels: list[str] = []  # every answer seen in any of the questions, the form's order, extras last
    for report in reports:
        labels += [line[0] for line in report.row_labels if line[0] not in labels]
    labels.sort(key=lambda label: label in (MISSING, OTHER))
    values, totals = [], []
    for report in reports:
        rows = {line[0]: r for r, line in enumerate(report.row_labels)}
        values.append([_cell(report, rows[label], 0) if label in rows else 0 for label in labels])
        totals.append(_cell(report, len(report.grid) - 1, 0))
    series = [_label(label, label) for label in labels]
    return Chart(
        key=key,
        title=title,
        kind="stacked",
        description=description,
        categories=[report.row_headers[0] for report in reports],
        series=series,
        values=values,
        totals=totals,
        scale=True,
    )


def _submissions(board: Board) -> tuple[Chart, Chart]:
    """Submissions per day (all forms) and per form, from one day × form table suppressed as a whole."""
    titles, per_form = [], []
    for _form, schema in board.forms.values():
        report = board.reports(schema.xml_form_id, [DAILY])
        assert report is not None
        titles.append(schema.xml_form_id)
        per_form.append({labels[0]: report[0].grid[r][0] for r, labels in enumerate(report[0].row_labels)})
    days = sorted({day for counts in per_form for day in counts})
    grid = [[counts.get(day, 0) for counts in per_form] for day in days]
    grid = [[*line, sum(line)] for line in grid]
    grid.append([sum(column) for column in zip(*grid, strict=True)] if grid else [0] * (len(titles) + 1))
    hidden = suppress_grid(grid, board.min_cell) if board.suppress and days else set()

    def shown(r: int, c: int) -> int | None:
        return None if (r, c) in hidden else grid[r][c]

    last = len(titles)
    daily = Chart(
        key="daily",
        title=_("Submissions per day"),
        kind="daily",
        description=_("Submissions received each day, all forms together."),
        categories=days,
        series=[_("Submissions")],
        values=[[shown(r, last)] for r in range(len(days))],
        totals=[shown(r, last) for r in range(len(days))],
    )
    forms = Chart(
        key="forms",
        title=_("Submissions per form"),
        kind="bars",
        description=_("Submissions of each form."),
        categories=[_form_title(board, t) for t in titles],
        series=[_("Submissions")],
        values=[[shown(len(days), c)] for c in range(len(titles))],
        totals=[shown(len(days), c) for c in range(len(titles))],
    )
    return daily, forms


def _form_title(board: Board, xml_form_id: str) -> str:
    form = board.forms[xml_form_id][0]
    version = form.current_version
    return version.title if version is not None and version.title else xml_form_id


def _safety(board: Board) -> list[Chart]:
    reports = board.reports(SAFETY, SAFETY_SPECS)
    if reports is None:
        return []
    by_region, by_district, by_category = reports
    return [
        _stacked("safety-region", _("Safety concerns by region and severity"),
                 _("Safety concerns reported in each region, split by how serious they are."), by_region,
                 ordered=True),
        _bars("safety-district", _("Safety concerns by district"),
              _("Safety concerns reported in each district (those with none left out)."), by_district),
        _stacked("safety-category", _("Safety concerns by category and severity"),
                 _("Safety concerns of each kind, split by how serious they are."), by_category,
                 ordered=True),
    ]  # fmt: skip


def _youth(board: Board) -> list[Chart]:
    reports = board.reports(YOUTH, YOUTH_SPECS)
    if reports is None:
        return []
    trust, safe = reports[: len(TRUST_ITEMS)], reports[len(TRUST_ITEMS) :]
    return [
        _scale("youth-trust", _("Young people's trust in the police"),
               _("How far young people agree with each statement about the police (1 = strongly disagree, "
                 "5 = strongly agree)."), trust),
        _scale("youth-safe", _("How safe young people feel"),
               _("How safe young people feel in each place or time (1 = very unsafe, 5 = very safe)."), safe),
    ]  # fmt: skip


def _groups(board: Board) -> list[Chart]:
    if GROUPS not in board.forms:
        return []
    form, schema = board.forms[GROUPS]
    names = {f.name for f in schema.fields}
    if not set(PARTICIPANTS.values()) <= names:
        return []
    sums, _not_counted = sum_numbers(board.session, form, schema, board.filters, list(PARTICIPANTS.values()))
    sexes, bands = ("women", "men"), ("14_17", "18_29", "30plus")
    grid = [[sums[PARTICIPANTS[sex, band]] for band in bands] for sex in sexes]
    grid = [[*line, sum(line)] for line in grid]
    grid.append([sum(column) for column in zip(*grid, strict=True)])
    hidden = suppress_grid(grid, board.min_cell) if board.suppress else set()
    values = [[None if (r, c) in hidden else grid[r][c] for c in range(len(bands) + 1)] for r in range(2)]
    return [
        Chart(
            key="groups-participants",
            title=_("Focus-group participants by sex and age"),
            kind="stacked",
            description=_("People who took part in the focus groups, by sex and age band."),
            categories=[_("Women"), _("Men")],
            series=["14–17", "18–29", "30+"],
            values=[line[:-1] for line in values],
            totals=[line[-1] for line in values],
        )
    ]


def all_charts(board: Board) -> list[Chart]:
    board.plan(SAFETY, SAFETY_SPECS)  # counted with the daily table: one pass over each form
    board.plan(YOUTH, YOUTH_SPECS)
    daily, forms = _submissions(board)
    if len(daily.categories) > MAX_DAYS:
        daily.categories, daily.values, daily.totals = (
            daily.categories[-MAX_DAYS:], daily.values[-MAX_DAYS:], daily.totals[-MAX_DAYS:]
        )  # fmt: skip
    charts = [daily, forms, *_safety(board), *_youth(board), *_groups(board)]
    legend = _("%(hidden)s = hidden (too few to show)", hidden=HIDDEN)
    for chart in charts:
        chart.hidden_legend = legend
    return charts


CHART_BUILDERS: dict[str, Callable[[Board], list[Chart]]] = {
    "daily": lambda b: list(_submissions(b)[:1]),
    "forms": lambda b: list(_submissions(b)[1:]),
    "safety-region": _safety,
    "safety-district": _safety,
    "safety-category": _safety,
    "youth-trust": _youth,
    "youth-safe": _youth,
    "groups-participants": _groups,
}


def chart_csv(chart: Chart) -> bytes:
    """The chart's numbers: a row per bar, a column per segment and the total ([c] = hidden)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    series = chart.series if chart.kind == "stacked" else []
    writer.writerow(["", *series, _("Total")])
    for label, line, total in zip(chart.categories, chart.values, chart.totals, strict=True):
        cells = [HIDDEN if v is None else v for v in line] if series else []
        writer.writerow([label, *cells, HIDDEN if total is None else total])
    return out.getvalue().encode("utf-8")


# ------------------------------------------------------------------------------------------ routes


@console.get("/projects/<int:project_id>/dashboard")
def dashboard_page(project_id: int) -> ResponseReturnValue:
    board = _board(project_id)
    charts = all_charts(board)
    project = find_project(board.session, project_id)
    shown = [(chart, Markup(render(chart))) for chart in charts]  # ElementTree escaped every label
    return render_template(
        "dashboard.html",
        project=project,
        charts=shown,
        suppressed=board.suppress,
        min_cell=board.min_cell,
        since=request.args.get("since", ""),
        until=request.args.get("until", ""),
        query=request.query_string.decode("ascii", "replace"),
    )


@console.get("/projects/<int:project_id>/dashboard/<key>.<any('svg','csv'):fmt>")
def dashboard_chart(project_id: int, key: str, fmt: str) -> ResponseReturnValue:
    if key not in CHART_BUILDERS:
        raise errors.not_found(_("There is no such chart."))
    board = _board(project_id)
    chart = next((c for c in CHART_BUILDERS[key](board) if c.key == key), None)
    if chart is None:
        raise errors.not_found(_("This project has no form for this chart."))
    chart.hidden_legend = _("%(hidden)s = hidden (too few to show)", hidden=HIDDEN)
    if fmt == "svg":
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + render(chart)).encode("utf-8")
        mimetype = "image/svg+xml"
    else:
        body, mimetype = chart_csv(chart), "text/csv"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{key}.{fmt}"'
    response.headers["Cache-Control"] = "no-store"
    return response
