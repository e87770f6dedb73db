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
- Which submissions: every submission not deleted, including rejected ones (filter them with
  ``__system/reviewState``), leaving out test submissions (test devices and test app users) as every
  Sarhad dataset does.
- Personal data: values pass through :func:`server.datasets.redact.redact_value` for the requester's
  role, and ``$metadata`` types a pseudonymised field as ``Edm.String``; ``$filter`` sees the same
  redacted values.
- Streaming: rows are read from the database ``STREAM_BATCH`` at a time and written out one by one;
  nothing holds the whole table. Everything that can fail (options, filter, table path) is checked
  before the first byte is sent.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import quoteattr

from flask import Response, request, stream_with_context
from flask.typing import ResponseReturnValue
from lxml import etree
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from server import audit, db, errors
from server.api import api
from server.api.schemas import iso
from server.api.submissions import FormAccess, form_access, review_state_json, shown_identity
from server.datasets import STREAM_BATCH, Filters
from server.datasets import _query as dataset_query
from server.datasets import odata_filter as of
from server.datasets.export import AUDIT_ACTION as EXPORT_ACTION
from server.datasets.redact import Access, Treatment, redact_value
from server.datasets.schema import Field, FormSchema
from server.models import FormVersion, Submission

SVC = "/projects/<int:project_id>/forms/<xml_form_id>.svc"
ODATA_HEADERS = {"OData-Version": "4.0"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
FQDN_ROOT = "org.opendatakit.user"
SKIPTOKEN_PREFIX = "01"
_TRUE = {"true", "1", "yes"}
_TYPES = {
    "int": "Edm.Int64",
    "decimal": "Edm.Decimal",
    "boolean": "Edm.Boolean",
    "geopoint": "Edm.GeographyPoint",
    "geotrace": "Edm.GeographyLineString",
    "geoshape": "Edm.GeographyPolygon",
    "date": "Edm.Date",
    "dateTime": "Edm.DateTimeOffset",
}
SYSTEM_FIELDS = (
    "submissionDate",
    "updatedAt",
    "submitterId",
    "submitterName",
    "attachmentsPresent",
    "attachmentsExpected",
    "status",
    "reviewState",
    "deviceId",
    "edits",
    "formVersion",
)
_ORDERABLE = {
    "__system/submissionDate": Submission.created_at,
    "__system/updatedAt": Submission.updated_at,
    "__system/reviewState": Submission.review_state,
    "__id": Submission.instance_id,
}
_URL_SAFE = "$/()',:*"
_KEYED_SEGMENT = re.compile(r"^([^(]+)\('([^']*)'\)$")


def odata_name(name: str) -> str:
    """A name made into an OData identifier, as Central does: a leading character that cannot start
    one gets ``_`` in front, and characters other than letters, digits and ``_`` become ``_``."""
    name = re.sub(r"^([^A-Za-z_])", r"_\1", name)
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _flag(name: str) -> bool:
    return request.args.get(name, "").strip().lower() in _TRUE


def _bad_option(option: str, message: str) -> errors.Problem:
    return errors.Problem(400, "400.1", f"{option}: {message}", {"option": option})


# ---- the form as tables ---------------------------------------------------------------------------------


@dataclass
class Node:
    field: Field | None  # None for the root
    rel: str  # Central path, "" for the root
    opath: str  # OData path: sanitized steps joined with "/", "" for the root
    owner: str = ""  # opath of the table (repeat) the node is a column of; "" = Submissions
    children: list[Node] = field(default_factory=list)
    # Computed once (every row of every submission reads them):
    relpath: str = field(init=False)  # the path within its own table, as $select and $filter name it
    name: str = field(init=False)  # the OData property name
    repeat: bool = field(init=False)
    group: bool = field(init=False)  # a group (not a repeat)
    by_name: dict[str, Node] = field(init=False, default_factory=dict)  # children by XML name

    def __post_init__(self) -> None:
        self.relpath = self.opath[len(self.owner) + 1 :] if self.owner else self.opath
        self.name = self.opath.rsplit("/", 1)[-1]
        self.repeat = self.field is not None and self.field.repeat
        self.group = self.field is not None and self.field.group and not self.field.repeat

    def add(self, child: Node) -> None:
        self.children.append(child)
        assert child.field is not None
        self.by_name[child.field.name] = child


@dataclass
class Table:
    name: str  # "Submissions" or "Submissions.group.repeat"
    node: Node  # the root or the repeat
    parent: Table | None

    @property
    def parent_id_key(self) -> str:
        """``__Submissions-id``, or ``__Submissions-group-repeat-id`` under a nested repeat."""
        assert self.parent is not None
        steps = ["Submissions"] + ([*self.parent.node.opath.split("/")] if self.parent.node.opath else [])
        return f"__{'-'.join(steps)}-id"


@dataclass
class Tree:
    root: Node
    tables: dict[str, Table]
    by_opath: dict[str, Node]

    @classmethod
    def of(cls, schema: FormSchema) -> Tree:
        root = Node(None, "", "")
        by_rel: dict[str, Node] = {"": root}
        by_opath: dict[str, Node] = {}
        for f in schema.fields:
            parent_rel = f.rel[: f.rel.rfind("/")]
            parent = by_rel.get(parent_rel)
            if parent is None:
                continue
            opath = f"{parent.opath}/{odata_name(f.name)}".lstrip("/")
            owner = parent.opath if parent.repeat else parent.owner
            node = Node(f, f.rel, opath, owner)
            parent.add(node)
            by_rel[f.rel] = node
            by_opath[opath] = node
        tables: dict[str, Table] = {}

        def collect(node: Node, table: Table) -> None:
            for child in node.children:
                if child.repeat:
                    inner = Table(f"Submissions.{child.opath.replace('/', '.')}", child, table)
                    tables[inner.name] = inner
                    collect(child, inner)
                elif child.group:
                    collect(child, table)

        top = Table("Submissions", root, None)
        tables[top.name] = top
        collect(root, top)
        return cls(root, tables, by_opath)


def _service_root() -> str:
    path = request.path
    return request.host_url.rstrip("/") + path[: path.lower().index(".svc") + 4]


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


def _property_type(node: Node, access: Access, fqdn: str) -> str:
    assert node.field is not None
    if access.treatment(node.field) is Treatment.PSEUDONYMISE:
        return "Edm.String"
    return _TYPES.get(node.field.type, "Edm.String")


def edmx(xml_form_id: str, tree: Tree, access: Access) -> str:
    fqdn = f"{FQDN_ROOT}.{odata_name(xml_form_id)}"
    entity_xml: list[str] = []
    complex_xml: list[str] = []

    def properties(node: Node) -> list[str]:
        out = []
        for child in node.children:
            name = quoteattr(child.name)
            type_name = child.opath.replace("/", ".")
            if child.repeat:
                out.append(
                    f'<NavigationProperty Name={name} Type="Collection({fqdn}.Submissions.{type_name})"/>'
                )
            elif child.group:
                complex_xml.append(
                    f"<ComplexType Name={quoteattr(type_name)}>{''.join(properties(child))}</ComplexType>"
                )
                out.append(f"<Property Name={name} Type={quoteattr(f'{fqdn}.{type_name}')}/>")
            else:
                out.append(f"<Property Name={name} Type={quoteattr(_property_type(child, access, fqdn))}/>")
        return out

    for table in tree.tables.values():
        head = ['<Key><PropertyRef Name="__id"/></Key>', '<Property Name="__id" Type="Edm.String"/>']
        if table.parent is None:
            head.append('<Property Name="__system" Type="org.opendatakit.submission.metadata"/>')
        else:
            head.append(f'<Property Name={quoteattr(table.parent_id_key)} Type="Edm.String"/>')
        entity_xml.append(
            f"<EntityType Name={quoteattr(table.name)}>{''.join(head + properties(table.node))}</EntityType>"
        )
    sets = "".join(
        f"<EntitySet Name={quoteattr(name)} EntityType={quoteattr(f'{fqdn}.{name}')}>"
        + (_ROOT_ANNOTATIONS if name == "Submissions" else "")
        + "</EntitySet>"
        for name in tree.tables
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">'
        "<edmx:DataServices>"
        f"{_SYSTEM_SCHEMA}"
        f'<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace={quoteattr(fqdn)}>'
        f"{''.join(entity_xml)}{''.join(complex_xml)}"
        f"<EntityContainer Name={quoteattr(odata_name(xml_form_id))}>{sets}</EntityContainer>"
        "</Schema></edmx:DataServices></edmx:Edmx>"
    )


_SYSTEM_SCHEMA = (
    '<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="org.opendatakit.submission">'
    '<ComplexType Name="metadata">'
    '<Property Name="submissionDate" Type="Edm.DateTimeOffset"/>'
    '<Property Name="updatedAt" Type="Edm.DateTimeOffset"/>'
    '<Property Name="submitterId" Type="Edm.String"/>'
    '<Property Name="submitterName" Type="Edm.String"/>'
    '<Property Name="attachmentsPresent" Type="Edm.Int64"/>'
    '<Property Name="attachmentsExpected" Type="Edm.Int64"/>'
    '<Property Name="status" Type="org.opendatakit.submission.Status"/>'
    '<Property Name="reviewState" Type="org.opendatakit.submission.ReviewState"/>'
    '<Property Name="deviceId" Type="Edm.String"/>'
    '<Property Name="edits" Type="Edm.Int64"/>'
    '<Property Name="formVersion" Type="Edm.String"/>'
    "</ComplexType>"
    '<EnumType Name="Status"><Member Name="notDecrypted"/>'
    '<Member Name="missingEncryptedFormData"/></EnumType>'
    '<EnumType Name="ReviewState"><Member Name="hasIssues"/><Member Name="edited"/>'
    '<Member Name="rejected"/><Member Name="approved"/></EnumType>'
    "</Schema>"
)
_ROOT_ANNOTATIONS = (
    '<Annotation Term="Org.OData.Capabilities.V1.ConformanceLevel" '
    'EnumMember="Org.OData.Capabilities.V1.ConformanceLevelType/Minimal"/>'
    '<Annotation Term="Org.OData.Capabilities.V1.BatchSupported" Bool="false"/>'
    '<Annotation Term="Org.OData.Capabilities.V1.CountRestrictions">'
    '<Record><PropertyValue Property="Countable" Bool="true"/></Record></Annotation>'
    '<Annotation Term="Org.OData.Capabilities.V1.SortRestrictions">'
    '<Record><PropertyValue Property="Sortable" Bool="false"/></Record></Annotation>'
    '<Annotation Term="Org.OData.Capabilities.V1.ExpandRestrictions">'
    '<Record><PropertyValue Property="Expandable" Bool="false"/></Record></Annotation>'
)


@api.get(f"{SVC}/$metadata")
def odata_metadata(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    tree = Tree.of(fa.schema(db.session()))
    return _response(edmx(fa.form.xml_form_id, tree, fa.access), "application/xml; charset=utf-8")


# ---- values ------------------------------------------------------------------------------------------


def _number(text: str, kind: type) -> Any:
    try:
        value = kind(text.strip())
    except ValueError:
        return None
    return (
        None
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf")))
        else value
    )


def _points(text: str) -> list[list[float]]:
    out = []
    for part in re.split(r";\s*", text.strip()):
        try:
            numbers = [float(n) for n in part.split()]
        except ValueError:
            continue
        if len(numbers) >= 2:
            out.append(numbers)
    return out


def _geo(kind: str, text: str, wkt: bool) -> Any:
    points = _points(text)
    if not points:
        return None
    coords = [[p[1], p[0], *p[2:3]] for p in points]
    if kind == "geopoint":
        point = coords[0]
        if wkt:
            return f"POINT ({' '.join(_num(c) for c in point)})"
        value: dict[str, Any] = {"type": "Point", "coordinates": point}
        if len(points[0]) >= 4:
            value["properties"] = {"accuracy": points[0][3]}
        return value
    if wkt:
        joined = ",".join(" ".join(_num(c) for c in p) for p in coords)
        return f"LINESTRING ({joined})" if kind == "geotrace" else f"POLYGON (({joined}))"
    if kind == "geotrace":
        return {"type": "LineString", "coordinates": coords}
    return {"type": "Polygon", "coordinates": [coords]}


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def odata_value(f: Field, text: str, access: Access, wkt: bool) -> Any:
    """A leaf's text as OData JSON, after redaction for this requester."""
    treatment = access.treatment(f)
    shown = redact_value(access, f, text)
    if shown is None or shown == "":
        return None
    if treatment is Treatment.PSEUDONYMISE:
        return shown
    kind = f.type
    if kind == "int":
        return _number(shown, int)
    if kind == "decimal":
        return _number(shown, float)
    if kind == "boolean":
        lowered = shown.strip().lower()
        return True if lowered in ("true", "1") else False if lowered in ("false", "0") else None
    if kind in ("geopoint", "geotrace", "geoshape"):
        return _geo(kind, shown, wkt)
    if kind == "dateTime":
        trimmed = shown.strip()
        return f"{trimmed}:00" if re.search(r"[+-]\d\d$", trimmed) else trimmed
    return shown


def _filter_value(f: Field, text: str | None, access: Access) -> Any:
    """A leaf's value as ``$filter`` compares it: redacted, typed as the form says."""
    if text is None:
        return None
    shown = redact_value(access, f, text)
    if shown is None or shown == "":
        return None
    if access.treatment(f) is Treatment.PSEUDONYMISE:
        return shown
    if f.type == "int":
        return _number(shown, int)
    if f.type == "decimal":
        return _number(shown, float)
    if f.type in ("date", "dateTime"):
        return of.parse_datetime(shown) or shown
    if f.type == "boolean":
        return shown.strip().lower() in ("true", "1")
    return shown


# ---- one submission as rows ------------------------------------------------------------------------------


@dataclass
class Record:
    id: int
    instance_id: str
    created_at: dt.datetime
    updated_at: dt.datetime | None
    review_state: str
    xml: str
    encrypted: bool
    form_version: str
    device_id: str | None
    submitter_id: int | None
    submitter_name: str | None
    attachments_present: int
    attachments_expected: int
    edits: int

    def system(self) -> dict[str, Any]:
        return {
            "submissionDate": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "submitterId": None if self.submitter_id is None else str(self.submitter_id),
            "submitterName": self.submitter_name,
            "attachmentsPresent": self.attachments_present,
            "attachmentsExpected": self.attachments_expected,
            "status": "notDecrypted" if self.encrypted else None,
            "reviewState": review_state_json(self.review_state),
            "deviceId": self.device_id,
            "edits": self.edits,
            "formVersion": self.form_version,
        }

    def system_value(self, name: str) -> Any:
        """A ``__system`` value as ``$filter`` compares it (datetimes as datetimes)."""
        if name == "submissionDate":
            return self.created_at
        if name == "updatedAt":
            return self.updated_at
        return self.system().get(name)


@dataclass
class Row:
    """A row of a table: its id, its parent's id, its JSON, and its raw texts (for ``$filter``)."""

    id: str
    parent_id: str | None
    data: dict[str, Any]
    texts: dict[str, str] = field(default_factory=dict)  # relpath → text


@dataclass
class Selection:
    """``$select``: which columns of the table are written (None = all of them)."""

    paths: set[str] | None = None  # relpaths of the table's nodes to include
    system: set[str] | None = None  # __system properties (None = all)
    with_id: bool = True
    with_parent_id: bool = True

    def includes(self, node: Node, table: Table) -> bool:
        return self.paths is None or node.owner != table.node.opath or node.relpath in self.paths


def parse_select(raw: str | None, tree: Tree, table: Table) -> Selection:
    if raw is None or raw.strip() in ("", "*"):
        return Selection()
    table_nodes = [n for n in tree.by_opath.values() if n.owner == table.node.opath]
    selection = Selection(paths=set(), system=set(), with_id=False, with_parent_id=False)
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if item == "__id":
            selection.with_id = True
        elif table.parent is None and item == "__system":
            selection.system = None
        elif table.parent is None and item.startswith("__system/") and item[9:] in SYSTEM_FIELDS:
            if selection.system is not None:
                selection.system.add(item[9:])
        elif table.parent is not None and item == table.parent_id_key:
            selection.with_parent_id = True
        else:
            matched = [
                n.relpath
                for n in table_nodes
                if n.relpath == item or n.relpath.startswith(item + "/") or item.startswith(n.relpath + "/")
            ]
            if not any(n.relpath == item for n in table_nodes):
                raise of.unknown_property(item)
            assert selection.paths is not None
            selection.paths.update(matched)
    if selection.system is not None and not selection.system and "__system" not in raw:
        selection.system = set()
    return selection


@dataclass
class Shaper:
    """Turns one submission into the rows of the requested table, as the query options ask."""

    tree: Tree
    table: Table
    access: Access
    wkt: bool
    expand: bool
    selection: Selection

    def frame(self, node: Node, link: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for child in node.children:
            if not self.selection.includes(child, self.table):
                continue
            if child.group:
                out[child.name] = self.frame(child, link)
            elif child.repeat:
                out[f"{child.name}@odata.navigationLink"] = f"{link}/{child.relpath}"
            else:
                out[child.name] = None
        return out

    def shape(self, record: Record) -> tuple[Row, list[Row]]:
        """(the submission's row, the rows of the requested table)."""
        link = f"Submissions('{quote(record.instance_id, safe=':')}')"
        data: dict[str, Any] = {"__id": record.instance_id}
        data["__system"] = record.system()
        data.update(self.frame(self.tree.root, link))
        root = Row(record.instance_id, None, data)
        wanted: list[Row] = [root] if self.table.parent is None else []
        if not record.encrypted:
            try:
                element = etree.fromstring(record.xml.encode("utf-8"), _PARSER)
            except etree.XMLSyntaxError:
                element = None
            if element is not None:
                self._walk(element, self.tree.root, root.data, root, link, record.instance_id, wanted)
        return root, wanted

    def _walk(
        self,
        el: etree._Element,
        node: Node,
        frame: dict[str, Any] | None,
        row: Row,
        link: str,
        key: str,
        wanted: list[Row],
    ) -> None:
        by_name = node.by_name
        counts: dict[str, int] = {}
        for child_el in el:
            if not isinstance(child_el.tag, str):
                continue
            child = by_name.get(etree.QName(child_el).localname)
            if child is None or child.field is None:
                continue
            step = child.field.name
            if child.repeat:
                counts[step] = counts.get(step, 0) + 1
                row_key = f"{key}/{step}[{counts[step]}]"
                row_id = hashlib.sha1(row_key.encode("utf-8")).hexdigest()
                row_link = f"{link}/{child.relpath}('{row_id}')"
                parent_key = f"__{'-'.join(['Submissions', *filter(None, child.owner.split('/'))])}-id"
                data = {"__id": row_id, parent_key: row.id, **self.frame(child, row_link)}
                inner = Row(row_id, row.id, data)
                if child is self.table.node:
                    wanted.append(inner)
                elif self.expand and frame is not None and self.selection.includes(child, self.table):
                    frame.setdefault(child.name, []).append(data)
                self._walk(child_el, child, data, inner, row_link, row_key, wanted)
            elif child.group:
                inner_frame = frame.get(child.name) if frame is not None else None
                self._walk(child_el, child, inner_frame, row, link, f"{key}/{step}", wanted)
            elif child_el.text is not None:
                text = row.texts.get(child.relpath, "") + child_el.text
                row.texts[child.relpath] = text
                if frame is not None and child.name in frame:
                    frame[child.name] = odata_value(child.field, text, self.access, self.wkt)

    def finish(self, row: Row) -> dict[str, Any]:
        """The row as written: ``$select`` drops the ids and ``__system`` properties not asked for."""
        data = row.data
        sel = self.selection
        if sel.paths is None and sel.system is None:
            return data
        out = dict(data)
        if not sel.with_id:
            out.pop("__id", None)
        if self.table.parent is not None and not sel.with_parent_id:
            out.pop(self.table.parent_id_key, None)
        if self.table.parent is None:
            if sel.system is not None and not sel.system:
                out.pop("__system", None)
            elif sel.system is not None:
                out["__system"] = {k: v for k, v in data["__system"].items() if k in sel.system}
        return out


# ---- $filter on rows --------------------------------------------------------------------------------------


@dataclass
class RowFilter:
    node: of.Node | None
    tree: Tree
    table: Table
    access: Access

    def __post_init__(self) -> None:
        for member in of.members(self.node) if self.node is not None else ():
            self._check(member)

    def _on_root(self, member: of.Member) -> bool:
        return member.root or self.table.parent is None

    def _node(self, member: of.Member) -> Node | None:
        owner = "" if self._on_root(member) else self.table.node.opath
        path = f"{owner}/{member.path}" if owner else member.path
        found = self.tree.by_opath.get(path)
        if found is None or found.owner != owner or found.group or found.repeat:
            return None
        return found

    def _check(self, member: of.Member) -> None:
        on_root = self._on_root(member)
        if (
            member.path == "__id"
            or (on_root and member.path.startswith("__system/") and member.path[9:] in SYSTEM_FIELDS)
            or (not on_root and member.path == self.table.parent_id_key)
            or self._node(member) is not None
        ):
            return
        raise of.unknown_property(("$root/Submissions/" if member.root else "") + member.path)

    @property
    def needs_fields(self) -> bool:
        return self.node is not None and any(not m.path.startswith("__") for m in of.members(self.node))

    def passes(self, record: Record, root: Row, row: Row) -> bool:
        if self.node is None:
            return True

        def resolve(member: of.Member) -> Any:
            on_root = self._on_root(member)
            target = root if on_root else row
            if member.path == "__id":
                return target.id
            if on_root and member.path.startswith("__system/"):
                return record.system_value(member.path[9:])
            if not on_root and member.path == self.table.parent_id_key:
                return row.parent_id
            found = self._node(member)
            assert found is not None and found.field is not None
            return _filter_value(found.field, target.texts.get(found.relpath), self.access)

        try:
            return of.matches(self.node, resolve)
        except (TypeError, ValueError, OverflowError):
            # Values that cannot be compared (text against a number the form did not type) do not match.
            return False


# ---- reading submissions ------------------------------------------------------------------------------

ODATA_FILTERS = Filters(include_rejected=True)


def _records(session: Session, form_id: int, access: Access, stmt: Select[Any]) -> Iterator[Record]:
    versions = dict(
        session.execute(
            select(FormVersion.id, FormVersion.version).where(FormVersion.form_id == form_id)
        ).all()
    )
    for row in session.execute(stmt.execution_options(yield_per=STREAM_BATCH)):
        (sid, iid, created, updated, state, _deleted, _vid, _viid, xml, enc, fvid, device, app_user_id,
         user_id, app_user_name, user_name, present, expected, count) = row  # fmt: skip
        yield Record(
            id=sid,
            instance_id=iid,
            created_at=created,
            updated_at=updated,
            review_state=state,
            xml=xml,
            encrypted=bool(enc),
            form_version=versions.get(fvid, ""),
            device_id=shown_identity(access, device),
            submitter_id=app_user_id if app_user_id is not None else user_id,
            submitter_name=shown_identity(access, app_user_name if app_user_id is not None else user_name),
            attachments_present=int(present or 0),
            attachments_expected=int(expected or 0),
            edits=max(int(count or 1) - 1, 0),
        )


# ---- paging -----------------------------------------------------------------------------------------------


def encode_skiptoken(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return SKIPTOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_skiptoken(token: str) -> dict[str, Any]:
    bad = errors.Problem(
        400, "400.20", "The $skiptoken is not one this server gave out.", {"option": "$skiptoken"}
    )
    if not token.startswith(SKIPTOKEN_PREFIX):
        raise bad
    body = token[len(SKIPTOKEN_PREFIX) :]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(data, dict) or not all(isinstance(v, int) and v >= 0 for v in data.values()):
        raise bad
    if not data or not set(data) <= {"s", "n", "o"}:
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
    return value


def _next_link(token: dict[str, Any]) -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("$skip", "$skiptoken")]
    args.append(("$skiptoken", encode_skiptoken(token)))
    return f"{request.base_url}?{urlencode(args, safe=_URL_SAFE)}"


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


@api.get(f"{SVC}/<path:resource>")
def odata_table_rows(project_id: int, xml_form_id: str, resource: str) -> ResponseReturnValue:
    fa = form_access(project_id, xml_form_id)
    session = db.session()
    tree = Tree.of(fa.schema(session))
    target = resolve_path(tree, resource)
    table = target.table
    top, skip = _non_negative("$top"), _non_negative("$skip") or 0
    raw_token = request.args.get("$skiptoken")
    token = decode_skiptoken(raw_token) if raw_token else None
    raw_filter = request.args.get("$filter")
    node = of.parse(raw_filter) if raw_filter is not None and raw_filter.strip() else None
    row_filter = RowFilter(node, tree, table, fa.access)
    push = of.pushdown(node, on_root=table.parent is None)
    order = _order(request.args.get("$orderby"))
    if order is not None and table.parent is not None:
        raise _bad_option("$orderby", "only the Submissions table can be ordered.")
    expand = request.args.get("$expand")
    if expand is not None and expand.strip() not in ("", "*"):
        raise _bad_option("$expand", "only $expand=* (every repeat) is supported.")
    shaper = Shaper(
        tree,
        table,
        fa.access,
        _flag("$wkt"),
        bool(expand),
        parse_select(request.args.get("$select"), tree, table),
    )
    want_count = _flag("$count")

    base = dataset_query(fa.form, fa.project, ODATA_FILTERS)
    for clause in push.clauses:
        base = base.where(clause)
    if target.instance_id is not None:
        base = base.where(Submission.instance_id == target.instance_id)
        if session.scalar(select(func.count()).select_from(base.order_by(None).subquery())) == 0:
            raise errors.not_found(f"There is no submission {target.instance_id!r} of this form.")
    python_filter = node is not None and not push.complete
    root_table = table.parent is None

    def wanted(record: Record, root: Row, row: Row) -> bool:
        if target.row_id is not None and row.id != target.row_id:
            return False
        if target.parent_id is not None and row.parent_id != target.parent_id and table.parent is not None:
            return False
        return row_filter.passes(record, root, row)

    # Where to start: a skiptoken wins over $skip, as in Central.
    stmt = base
    python_skip = skip if token is None else 0
    resume_n = 0
    if order is not None:
        stmt = stmt.order_by(None).order_by(*order)
        position = token.get("o", 0) if token else skip
        python_skip = 0
        if python_filter:
            python_skip = position
        else:
            stmt = stmt.offset(position)
    elif token is not None:
        stmt = (
            stmt.where(Submission.id >= token.get("s", 0))
            if not root_table
            else stmt.where(Submission.id > token.get("s", 0))
        )
        resume_n = token.get("n", 0)
    elif root_table and not python_filter and skip:
        stmt = stmt.offset(skip)
        python_skip = 0
    if root_table and not python_filter and top is not None:
        stmt = stmt.limit(top + 1)

    _record_read(fa, table, target)
    context = f"{_service_root()}/$metadata#{table.name}"
    # The generator runs after the view returns: it keeps plain values, not the request's ORM objects.
    form_id, access = fa.form.id, fa.access
    start_position = (token.get("o", 0) if token else skip) if order is not None else 0

    def generate() -> Iterator[str]:
        yield '{"@odata.context":' + json.dumps(context) + ',"value":['
        emitted, skipped, has_more = 0, 0, False
        last: tuple[int, int] | None = None
        with db.database().read() as read_session:
            for record in _records(read_session, form_id, access, stmt):
                root, rows = shaper.shape(record)
                for index, row in enumerate(rows):
                    if (
                        token is not None
                        and not root_table
                        and record.id == token.get("s")
                        and index < resume_n
                    ):
                        continue
                    if not wanted(record, root, row):
                        continue
                    if skipped < python_skip:
                        skipped += 1
                        continue
                    if top is not None and emitted >= top:
                        has_more = True
                        break
                    yield ("," if emitted else "") + json.dumps(
                        shaper.finish(row), ensure_ascii=False, separators=(",", ":")
                    )
                    emitted += 1
                    last = (record.id, index)
                if has_more:
                    break
        yield "]"
        if want_count:
            total = _count(form_id, access, base, shaper, wanted, root_table and not python_filter)
            yield f',"@odata.count":{total}'
        if has_more and last is not None:
            if order is not None:
                next_token = {"o": start_position + emitted}
            elif root_table:
                next_token = {"s": last[0]}
            else:
                next_token = {"s": last[0], "n": last[1] + 1}
            yield ',"@odata.nextLink":' + json.dumps(_next_link(next_token))
        yield "}"

    return _response(stream_with_context(generate()))


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


def _count(
    form_id: int,
    access: Access,
    base: Select[Any],
    shaper: Shaper,
    wanted: Callable[[Record, Row, Row], bool],
    in_sql: bool,
) -> int:
    with db.database().read() as session:
        if in_sql:
            return int(session.scalar(select(func.count()).select_from(base.order_by(None).subquery())) or 0)
        total = 0
        for record in _records(session, form_id, access, base):
            root, rows = shaper.shape(record)
            total += sum(1 for row in rows if wanted(record, root, row))
        return total
