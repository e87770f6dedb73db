"""Donor reports over HTTP: ``GET /v1/projects/{p}/forms/{f}/report.csv`` and ``report.xlsx``.

Query: ``rows=region,district`` (required), ``cols=respondent_sex``, ``lang=en|tg|ru``, ``since=`` /
``until=`` (``YYYY-MM-DD`` or ISO 8601; until's day included), ``minCell=`` (may raise k above
``SARHAD_REPORT_MIN_CELL``, never lower it), ``{keyId}=passphrase`` (also as a form-encoded POST) to
count encrypted submissions. Any role in the project may download a report: it holds
counts only, with the small ones hidden (:mod:`server.datasets.report`). Every report is in the audit log
(``form.submission.report``).
"""

from __future__ import annotations

from flask import Response
from flask.typing import ResponseReturnValue

from server import auth, config, db
from server.api import api
from server.api.exports import content_disposition, passphrases_given
from server.api.schemas import ReportQuery, load_query
from server.datasets import Filters, parse_bound
from server.datasets.report import ReportRequest, split_dimensions
from server.datasets.report_files import REPORT_FORMATS, min_cell, produce_report
from server.datasets.tables import sanitize_filename
from server.forms.publish import find_form
from server.project_keys import unlock_keys
from server.projects import find_project


@api.route(
    "/projects/<int:project_id>/forms/<xml_form_id>/report.<any('csv','xlsx'):fmt>", methods=["GET", "POST"]
)
def donor_report(project_id: int, xml_form_id: str, fmt: str) -> ResponseReturnValue:
    user = auth.require_project_role(project_id)
    query = load_query(ReportQuery())
    session = db.session()
    project = find_project(session, project_id)
    form = find_form(session, project.id, xml_form_id)
    passphrases = passphrases_given()
    keys = unlock_keys(session, project.id, passphrases) if passphrases else None
    request = ReportRequest(
        rows=split_dimensions(query["rows"]),
        cols=(query["cols"] or "").strip() or None,
        lang=query["lang"],
        filters=Filters(
            since=parse_bound(query["since"], name="since"),
            until=parse_bound(query["until"], end=True, name="until"),
        ),
        min_cell=min_cell(config.settings().report_min_cell, query["min_cell"]),
    )
    _report, data = produce_report(
        db.database(), form.id, request, fmt, user, via="api", keys=keys, key_ids=sorted(passphrases)
    )
    response = Response(data, content_type=REPORT_FORMATS[fmt])
    response.headers["Content-Disposition"] = content_disposition(
        f"{sanitize_filename(form.xml_form_id)}-report.{fmt}"
    )
    response.headers["Cache-Control"] = "no-store"
    return response
