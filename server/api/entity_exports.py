"""Entity lists for analysts and donors over HTTP (the CLI's ``sarhad entities export`` and ``report``):

- ``GET /v1/projects/{p}/datasets/{name}/entities.xlsx``: the live entities as a spreadsheet (the CSV is
  Central's ``entities.csv``);
- ``GET /v1/projects/{p}/datasets/{name}/report.csv`` or ``report.xlsx`` with ``rows=district``,
  ``cols=status``, ``minCell=``: counts of entities with small counts hidden.

Any role in the project may download them (a list holds no personal data); both are audited
(``dataset.export``, ``dataset.report``).
"""

from __future__ import annotations

from flask import Response
from flask.typing import ResponseReturnValue

from server import auth, config, db
from server.api import api
from server.api.exports import content_disposition
from server.api.schemas import ReportQuery, load_query
from server.datasets.report_files import REPORT_FORMATS, min_cell, render_report
from server.datasets.tables import sanitize_filename
from server.entities import exports
from server.entities.lists import find_entity_list
from server.projects import find_project

LIST = "/projects/<int:project_id>/datasets/<name>"


def _file(data: bytes, fmt: str, name: str) -> Response:
    response = Response(data, content_type=REPORT_FORMATS[fmt])
    response.headers["Content-Disposition"] = content_disposition(f"{sanitize_filename(name)}.{fmt}")
    response.headers["Cache-Control"] = "no-store"
    return response


@api.get(f"{LIST}/entities.xlsx")
def entities_xlsx(project_id: int, name: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id)
    with db.database().write() as w:  # the export is recorded before it is handed out
        entity_list = find_entity_list(w.session, find_project(w.session, project_id).id, name)
        header, rows = exports.table(w.session, entity_list)
        exports.record(
            w.session, entity_list, "dataset.export", user, format="xlsx", via="api", rows=len(rows)
        )
    return _file(exports.render_table(header, rows, "xlsx"), "xlsx", name)


@api.get(f"{LIST}/report.<any('csv','xlsx'):fmt>")
def entities_report(project_id: int, name: str, fmt: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id)
    query = load_query(ReportQuery())
    rows = tuple(r.strip() for r in query["rows"].split(",") if r.strip())
    cols = (query["cols"] or "").strip() or None
    k = min_cell(config.settings().report_min_cell, query["min_cell"])
    with db.database().write() as w:
        entity_list = find_entity_list(w.session, find_project(w.session, project_id).id, name)
        made = exports.report(w.session, entity_list, rows, cols, k)
        exports.record(w.session, entity_list, "dataset.report", user, rows=list(rows), cols=cols, min_cell=k)
    return _file(render_report(made, fmt), fmt, f"{name}-report")
