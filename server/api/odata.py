"""OData v4 at ``/v1/projects/{p}/forms/{f}.svc``, in ODK Central's shape (Excel, Power BI, pyodk).

- ``.svc`` — the service document: ``Submissions`` and one entity set per repeat
  (``Submissions.group.repeat``).
- ``.svc/$metadata`` — EDMX: an entity type per table, groups as complex types, repeats as navigation
  properties, ``__system`` as ``org.opendatakit.submission.metadata``.
- ``.svc/Submissions``, ``.svc/Submissions.group.repeat`` — rows with ``__id`` (and ``__system`` on
  submissions, ``__Submissions[-parent]-id`` on repeat rows); ``Submissions('uuid:..')`` and the
  navigation links ``Submissions('uuid:..')/group/repeat``.
- Query options: ``$top $skip $count $filter $orderby $select $expand=* $skiptoken $wkt``. Booleans
  (``$count``, ``$wkt``) are read in any case (pyodk sends ``True``). Without ``$top`` every row is sent,
  as Central does (pyodk reads no ``@odata.nextLink``); with ``$top`` a page ends with
  ``@odata.nextLink`` carrying a ``$skiptoken`` when more rows remain.
- Order: newest first (received time, then id), as Central; a ``$skiptoken`` resumes after the
  submission it names in that order.
- The rows themselves are shaped in :mod:`server.datasets.odata_rows` from the one reader of
  submissions (:mod:`server.datasets.reader`); this module is the HTTP side.
- Which submissions: every submission not deleted, including rejected ones (filter them with
  ``__system/reviewState``), leaving out test submissions (test devices and test app users) as every
  Sarhad dataset does.
- Personal data: values pass through :func:`server.datasets.redact.redact_value` for the requester's
  role, and ``$metadata`` types a pseudonymised field as ``Edm.String``; ``$filter`` sees the same
  redacted values. Device ids and submitter names are pseudonymised too. Every table read is in the
  audit log as an export (``form.submission.export``, format ``odata``) before its first row.
- ``$orderby``: ``__system/submissionDate``, ``__system/updatedAt``, ``__system/reviewState``, ``__id``
  (``asc``/``desc``), on ``Submissions`` only.
- Streaming: rows are read from the database ``STREAM_BATCH`` at a time and written out one by one;
  nothing holds the whole table. Everything that can fail (options, filter, table path) is checked
  before the first byte is sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from flask import Response, request, stream_with_context
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from server import audit, config, db, errors
from server.api import api
from server.api.submissions import FormAccess, form_access, shown_identity
from server.datasets import Filters, SubmissionRecord, records, submissions_query
from server.datasets import odata_filter as of
from server.datasets.export import AUDIT_ACTION as EXPORT_ACTION
from server.datasets.odata_rows import Row, RowFilter, Shaper, parse_select
from server.datasets.odata_schema import Table, Tree, edmx
from server.datasets.redact import Access
from server.models import MAX_ID, Form, Submission

SVC = "/projects/<int:project_id>/forms/<xml_form_id>.svc"
ODATA_HEADERS = {"OData-Version": "4.0"}
SKIPTOKEN_PREFIX = "01"
_TRUE = {"true", "1", "yes"}
_ORDERABLE = {
    "__system/submissionDate": Submission.created_at,
    "__system/updatedAt": Submission.updated_at,
    "__system/reviewState": Submission.review_state,
    "__id": Submission.instance_id,
}
_URL_SAFE = "$/()',:*"
_KEYED_SEGMENT = re.compile(r"^([^(]+)\('([^']*)'\)$")


def _flag(name: str) -> bool:
    return request.args.get(name, "").strip().lower() in _TRUE


def _bad_option(option: str, message: str) -> errors.Problem:
    return errors.bad_query_option(option, message)


def _absolute(path: str) -> str:
    """An absolute URL on this server: BASE_URL when set (behind a proxy), else the request's host."""

    return (config.settings().base_url or request.host_url).rstrip("/") + path


def _service_root() -> str:
    path = quote(request.path, safe=_URL_SAFE + "%")  # a form id's %2F and %25 stay encoded
    return _absolute(path[: path.lower().index(".svc") + 4])


def _response(body: Any, content_type: str = "application/json; charset=utf-8") -> Response:
    if not isinstance(body, str | bytes) and not hasattr(body, "__next__"):
        body = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(body, content_type=content_type, headers=ODATA_HEADERS)


# ---- service document and $metadata ---------------------------------------------------------------------


@api.get(SVC)
@api.get(f"{SVC}/")
def odata_service_document(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    tree = Tree.of(fa.schema(db.session()))
    return _response(
        {
            "@odata.context": f"{_service_root()}/$metadata",
            "value": [{"name": name, "kind": "EntitySet", "url": name} for name in tree.tables],
        }
    )


@api.get(f"{SVC}/$metadata")
def odata_metadata(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    tree = Tree.of(fa.schema(db.session()))
    return _response(edmx(fa.form.xml_form_id, tree, fa.access), "application/xml; charset=utf-8")


# ---- reading submissions ------------------------------------------------------------------------------

ODATA_FILTERS = Filters(include_rejected=True)


def _records(session: Session, form_id: int, access: Access, stmt: Select[Any]) -> Iterator[SubmissionRecord]:
    """The submissions of one page, read as every export reads them; device ids and submitter names
    pseudonymised for a redacted requester."""
    form = session.get(Form, form_id)
    assert form is not None
    for record in records(session, form, stmt):
        yield replace(
            record,
            device_id=shown_identity(access, record.device_id),
            submitter_name=shown_identity(access, record.submitter_name),
        )


# ---- paging -----------------------------------------------------------------------------------------------


# Row counts and ids beyond the database's integers ($top, $skip, a forged $skiptoken) are refused, not
# passed on to fail in the middle of a streamed page.
MAX_COUNT = MAX_ID


def encode_skiptoken(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return SKIPTOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_skiptoken(token: str) -> dict[str, Any]:
    bad = errors.bad_skiptoken()
    if not token.startswith(SKIPTOKEN_PREFIX):
        raise bad
    body = token[len(SKIPTOKEN_PREFIX) :]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(data, dict) or not data or not set(data) <= {"s", "n", "o"}:
        raise bad
    if not all(isinstance(v, int) and 0 <= v <= MAX_COUNT for v in data.values()):
        raise bad
    return data


def _non_negative(option: str) -> int | None:
    raw = request.args.get(option)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _bad_option(option, f"{raw!r} is not a whole number.") from None
    if value < 0:
        raise _bad_option(option, "must not be negative.")
    if value > MAX_COUNT:
        raise _bad_option(option, f"must be at most {MAX_COUNT}.")
    return value


def _next_link(token: dict[str, Any]) -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("$skip", "$skiptoken")]
    args.append(("$skiptoken", encode_skiptoken(token)))
    return f"{_absolute(quote(request.path, safe=_URL_SAFE + '%'))}?{urlencode(args, safe=_URL_SAFE)}"


def _order(raw: str | None) -> list[Any] | None:
    if raw is None or not raw.strip():
        return None
    clauses: list[Any] = []
    direction = "asc"
    for part in raw.split(","):
        words = part.split()
        if not words or len(words) > 2 or words[0] not in _ORDERABLE:
            raise _bad_option(
                "$orderby", f"{part.strip()!r}: order by {', '.join(_ORDERABLE)} followed by asc or desc."
            )
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise _bad_option("$orderby", f"{words[1]!r} is neither asc nor desc.")
        column = _ORDERABLE[words[0]]
        clauses.append(column.asc().nulls_first() if direction == "asc" else column.desc().nulls_last())
    clauses.append(Submission.id.asc() if direction == "asc" else Submission.id.desc())
    return clauses


def _after(submission_id: int, *, inclusive: bool) -> Any:
    """The submissions that come after ``submission_id`` newest first (received earlier, or at the same
    time with a smaller id), and that one too if ``inclusive``: where a page resumes."""
    then = select(Submission.created_at).where(Submission.id == submission_id).scalar_subquery()
    same_time = Submission.id <= submission_id if inclusive else Submission.id < submission_id
    return or_(Submission.created_at < then, and_(Submission.created_at == then, same_time))


# ---- the tables -------------------------------------------------------------------------------------------


@dataclass
class Target:
    """What a resource path asks for: a table, maybe one submission, maybe rows under one parent row."""

    table: Table
    instance_id: str | None = None
    parent_id: str | None = None
    row_id: str | None = None


def resolve_path(tree: Tree, resource: str) -> Target:
    segments = [s for s in resource.split("/") if s]
    not_found = errors.not_found(f"This form's OData service has no resource {resource!r}.")
    if not segments:
        raise not_found
    first = _KEYED_SEGMENT.match(segments[0])
    if first is None:
        if len(segments) == 1 and segments[0] in tree.tables:
            return Target(tree.tables[segments[0]])
        raise not_found
    if first.group(1) != "Submissions":
        raise not_found
    target = Target(tree.tables["Submissions"], instance_id=first.group(2))
    opath = ""
    for segment in segments[1:]:
        keyed = _KEYED_SEGMENT.match(segment)
        name = keyed.group(1) if keyed else segment
        opath = f"{opath}/{name}".lstrip("/")
        node = tree.by_opath.get(opath)
        if node is None or node.field is None:
            raise not_found
        if node.repeat:
            table = tree.tables[f"Submissions.{opath.replace('/', '.')}"]
            if target.row_id is not None:
                target.parent_id = target.row_id
            target.table, target.row_id = table, (keyed.group(2) if keyed else None)
        elif keyed:
            raise not_found
    if target.table.parent is not None and target.row_id is None and target.parent_id is None:
        target.parent_id = target.instance_id if target.table.parent.parent is None else None
    return target


@dataclass
class Options:
    """The query options of one table request, checked before anything is read or sent."""

    top: int | None
    skip: int
    token: dict[str, int] | None
    filter: of.Node | None
    order: list[Any] | None
    expand: bool
    wkt: bool
    count: bool
    select: str | None

    @classmethod
    def from_request(cls) -> Options:
        raw_token = request.args.get("$skiptoken")
        raw_filter = request.args.get("$filter")
        expand = request.args.get("$expand")
        if expand is not None and expand.strip() not in ("", "*"):
            raise _bad_option("$expand", "only $expand=* (every repeat) is supported.")
        return cls(
            top=_non_negative("$top"),
            skip=_non_negative("$skip") or 0,
            token=decode_skiptoken(raw_token) if raw_token else None,
            filter=of.parse(raw_filter) if raw_filter is not None and raw_filter.strip() else None,
            order=_order(request.args.get("$orderby")),
            expand=bool(expand),
            wkt=_flag("$wkt"),
            count=_flag("$count"),
            select=request.args.get("$select"),
        )


@dataclass
class Page:
    """One page of one table: which submissions to read (SQL) and which of their rows to send.

    Submissions are read newest first (as Central) unless ``$orderby`` says otherwise. What the database
    can do (the pushed-down part of ``$filter``, and ``$skip``/``$top`` when nothing is left to filter in
    Python) it does; the rest is done row by row. Where the next page starts travels in ``$skiptoken``:
    ``{"s": id}`` = after submission ``id`` (Submissions), ``{"s": id, "n": k}`` = from row ``k`` of
    submission ``id`` (repeat tables), ``{"o": n}`` = from the ``n``-th row (with ``$orderby``).
    """

    target: Target
    options: Options
    shaper: Shaper
    row_filter: RowFilter
    base: Select[Any]  # the matching submissions, unpaged (also what $count counts)
    sql_filter_complete: bool

    @property
    def table(self) -> Table:
        return self.target.table

    @property
    def on_root(self) -> bool:
        return self.table.parent is None

    @property
    def paged_in_sql(self) -> bool:
        return self.on_root and self.sql_filter_complete

    @property
    def position(self) -> int:
        """With $orderby: how many rows come before this page."""
        token = self.options.token
        return token.get("o", 0) if token else self.options.skip

    def statement(self) -> tuple[Select[Any], int]:
        """(the SQL of this page, how many matching rows to skip in Python)."""
        opts, stmt = self.options, self.base
        python_skip = opts.skip if opts.token is None else 0
        if opts.order is not None:
            stmt = stmt.order_by(None).order_by(*opts.order)
            python_skip = 0 if self.paged_in_sql else self.position
            if self.paged_in_sql:
                stmt = stmt.offset(self.position)
        elif opts.token is not None:
            stmt = stmt.where(_after(opts.token.get("s", 0), inclusive=not self.on_root))
        elif self.paged_in_sql and opts.skip:
            stmt, python_skip = stmt.offset(opts.skip), 0
        if self.paged_in_sql and opts.top is not None:
            stmt = stmt.limit(opts.top + 1)  # one more, to know whether a next page exists
        return stmt, python_skip

    def wanted(self, record: SubmissionRecord, root: Row, row: Row) -> bool:
        target = self.target
        if target.row_id is not None and row.id != target.row_id:
            return False
        if target.parent_id is not None and not self.on_root and row.parent_id != target.parent_id:
            return False
        return self.row_filter.passes(record, root, row)

    def resumed(self, record: SubmissionRecord, index: int) -> bool:
        """False for the rows of a repeat table's first submission that the previous page sent."""
        token = self.options.token
        return token is None or self.on_root or record.id != token.get("s") or index >= token.get("n", 0)

    def next_token(self, emitted: int, last: tuple[int, int]) -> dict[str, int]:
        if self.options.order is not None:
            return {"o": self.position + emitted}
        if self.on_root:
            return {"s": last[0]}
        return {"s": last[0], "n": last[1] + 1}


@api.get(f"{SVC}/<path:resource>")
def odata_table_rows(project_id: int, xml_form_id: str, resource: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    session = db.session()
    tree = Tree.of(fa.schema(session))
    target = resolve_path(tree, resource)
    options = Options.from_request()
    if options.order is not None and target.table.parent is not None:
        raise _bad_option("$orderby", "only the Submissions table can be ordered.")
    select_ = parse_select(options.select, tree, target.table)
    shaper = Shaper(tree, target.table, fa.access, options.wkt, options.expand, select_)
    row_filter = RowFilter(options.filter, tree, target.table, fa.access)
    pushed = of.pushdown(options.filter, on_root=target.table.parent is None)
    base = submissions_query(fa.form, fa.project, ODATA_FILTERS)
    for clause in pushed.clauses:
        base = base.where(clause)
    if target.instance_id is not None:
        base = base.where(Submission.instance_id == target.instance_id)
        if session.scalar(select(func.count()).select_from(base.order_by(None).subquery())) == 0:
            raise errors.not_found(f"There is no submission {target.instance_id!r} of this form.")
    page = Page(target, options, shaper, row_filter, base, options.filter is None or pushed.complete)
    _record_read(fa, target.table, target)
    context = f"{_service_root()}/$metadata#{target.table.name}"
    # The generator runs after the view returns: it keeps plain values, not the request's ORM objects.
    return _response(stream_with_context(_generate(page, context, fa.form.id, fa.access)))


def _generate(page: Page, context: str, form_id: int, access: Access) -> Iterator[str]:
    yield '{"@odata.context":' + json.dumps(context) + ',"value":['
    stmt, python_skip = page.statement()
    top = page.options.top
    emitted, skipped, has_more = 0, 0, False
    last: tuple[int, int] | None = None
    with db.database().read() as session:
        for record in _records(session, form_id, access, stmt):
            root, rows = page.shaper.shape(record)
            for index, row in enumerate(rows):
                if not page.resumed(record, index) or not page.wanted(record, root, row):
                    continue
                if skipped < python_skip:
                    skipped += 1
                    continue
                if top is not None and emitted >= top:
                    has_more = True
                    break
                body = json.dumps(page.shaper.finish(row), ensure_ascii=False, separators=(",", ":"))
                yield ("," if emitted else "") + body
                emitted += 1
                last = (record.id, index)
            if has_more:
                break
    yield "]"
    if page.options.count:
        yield f',"@odata.count":{_count(page, form_id, access)}'
    if has_more and last is not None:
        yield ',"@odata.nextLink":' + json.dumps(_next_link(page.next_token(emitted, last)))
    yield "}"


def _record_read(fa: FormAccess, table: Table, target: Target) -> None:
    """Every OData read is an export of the form's data: it goes in the audit log (as the file exports
    do, under the same action) before the first row is sent."""
    options = {k: v for k, v in request.args.items() if k.startswith("$")}
    with db.database().write() as w:
        audit.record(
            w.session,
            EXPORT_ACTION,  # the same action as every file export
            actor=fa.user,
            project_id=fa.form.project_id,
            target_type="form",
            target_id=fa.form.xml_form_id,
            format="odata",
            table=table.name,
            instance_id=target.instance_id,
            options=options,
            access=fa.access.describe(),
            via="api",
        )


def _count(page: Page, form_id: int, access: Access) -> int:
    """``@odata.count``: every matching row, whatever the paging."""
    with db.database().read() as session:
        if page.paged_in_sql:
            stmt = select(func.count()).select_from(page.base.order_by(None).subquery())
            return int(session.scalar(stmt) or 0)
        total = 0
        for record in _records(session, form_id, access, page.base):
            root, rows = page.shaper.shape(record)
            total += sum(1 for row in rows if page.wanted(record, root, row))
        return total
