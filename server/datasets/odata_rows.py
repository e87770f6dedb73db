"""One submission as OData rows: typed values, ``$select``, ``$expand``, navigation links, ``$filter``.

- Values follow the form's types as Central writes them: ``int`` → integer, ``decimal`` → number,
  ``geopoint``/``geotrace``/``geoshape`` → GeoJSON (or WKT with ``$wkt``), ``dateTime`` with a complete
  offset, ``boolean`` → true/false, everything else text; an empty or unreadable value is ``null``.
- Every value first passes :func:`server.datasets.redact.redact_value` for the requester, and
  ``$filter`` compares those same redacted values.
- A repeat row's ``__id`` is Central's: the SHA-1 of ``Submissions#<instance id>`` and, for each group
  and repeat above and at the row, ``<name>#`` (group) or ``<name>#<n>`` (repeat, counted from 0 within
  the row around it), joined with ``%%`` — so ids, links and joins built against Central data still hold.
  ``__Submissions[-repeat]-id`` names the row it belongs to. A repeat's navigation link is written
  where the submission has at least one of its rows (an empty repeat has none, as in Central);
  geotraces and geoshapes carry ``properties.accuracies`` when a point has one.
- Rows are built from :func:`server.datasets.reader.read`, the walk every export uses.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from server.datasets import SubmissionRecord
from server.datasets import odata_filter as of
from server.datasets.odata_schema import Node, Table, Tree
from server.datasets.reader import TableRow, UnreadableXml, read
from server.datasets.redact import Access, Treatment, redact_value
from server.datasets.schema import Field
from server.datasets.tables import submission_date
from server.models import ReviewState

SYSTEM_FIELDS = (
    "submissionDate",
    "updatedAt",
    "deletedAt",
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


def iso(value: dt.datetime | None) -> str | None:
    """A date as Central's JSON writes it (``2026-05-01T10:00:00.000Z``), or null."""
    return None if value is None else submission_date(value)


def review_state_json(state: str) -> str | None:
    """Central's review state: ``null`` until someone reviews the submission."""
    return None if state == ReviewState.RECEIVED else state


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
    value = (
        {"type": "LineString", "coordinates": coords}
        if kind == "geotrace"
        else {"type": "Polygon", "coordinates": [coords]}
    )
    # Central lists the accuracies beside the points when any point has one (0 counts as none there).
    accuracies = [(p[3] or None) if len(p) >= 4 else None for p in points]
    if any(a is not None for a in accuracies):
        value["properties"] = {"accuracies": accuracies}
    return value


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


def system_json(record: SubmissionRecord) -> dict[str, Any]:
    """``__system``: every key Central sends, in its order."""
    return {
        "submissionDate": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
        "submitterId": None if record.submitter_id is None else str(record.submitter_id),
        "submitterName": record.submitter_name,
        "attachmentsPresent": record.attachments_present,
        "attachmentsExpected": record.attachments_expected,
        "status": (
            ("missingEncryptedFormData" if record.encrypted_data_missing else "notDecrypted")
            if record.encrypted
            else None
        ),
        "reviewState": review_state_json(record.review_state),
        "deviceId": record.device_id,
        "edits": record.edits,
        "formVersion": record.form_version,
        "deletedAt": iso(record.deleted_at),
    }


def system_value(record: SubmissionRecord, name: str) -> Any:
    """A ``__system`` value as ``$filter`` compares it (datetimes as datetimes)."""
    if name == "submissionDate":
        return record.created_at
    if name == "updatedAt":
        return record.updated_at
    if name == "deletedAt":
        return record.deleted_at
    return system_json(record).get(name)


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

    def frame(self, node: Node) -> dict[str, Any]:
        """The row's columns, all null, groups as objects; a repeat's navigation link is added when the
        walk meets its first instance (as Central: an empty repeat has no link)."""
        out: dict[str, Any] = {}
        for child in node.children:
            if not self.selection.includes(child, self.table):
                continue
            if child.group:
                out[child.name] = self.frame(child)
            elif not child.repeat:
                out[child.name] = None
        return out

    def shape(self, record: SubmissionRecord) -> tuple[Row, list[Row]]:
        """(the submission's row, the rows of the requested table), from :mod:`server.datasets.reader`'s
        rows: each becomes its table's JSON, links and ``$expand`` nesting follow its parent."""
        link = f"Submissions('{quote(record.instance_id, safe=':')}')"
        data: dict[str, Any] = {"__id": record.instance_id}
        data["__system"] = system_json(record)
        data.update(self.frame(self.tree.root))
        root = Row(record.instance_id, None, data)
        wanted: list[Row] = [root] if self.table.parent is None else []
        if record.encrypted:
            return root, wanted
        try:
            read_rows = read(record.xml, self.tree.fields, record.instance_id)
            self._fill(root, next(read_rows), self.tree.root)
            built: dict[str, tuple[Row, str, bool]] = {record.instance_id: (root, link, True)}
            for read_row in read_rows:
                self._add(read_row, record.instance_id, built, wanted)
        except UnreadableXml:
            pass  # never expected (ingest parsed it): the row keeps its nulls
        return root, wanted

    def _add(
        self,
        read_row: TableRow,
        instance_id: str,
        built: dict[str, tuple[Row, str, bool]],
        wanted: list[Row],
    ) -> None:
        """One repeat row: its JSON, its link in the row around it, and its place in an expansion.
        ``built`` maps KEYs to (row, link, whether its JSON is written out)."""
        assert read_row.table is not None and read_row.parent_key is not None
        node = self.tree.by_rel[read_row.table]
        parent, parent_link, parent_shown = built[read_row.parent_key]
        row_id = read_row.odata_id(instance_id)
        row_link = f"{parent_link}/{node.relpath}('{row_id}')"
        frame = self._group_frame(parent.data, node) if parent_shown else None
        shown = frame is not None and self.selection.includes(node, self.table)
        if shown:
            assert frame is not None
            frame[f"{node.name}@odata.navigationLink"] = f"{parent_link}/{node.relpath}"
        data: dict[str, Any] = {"__id": row_id}
        if node is self.table.node:  # a row of the table asked for names the row it belongs to
            data[self.table.parent_id_key] = parent.id
        data.update(self.frame(node))
        row = Row(row_id, parent.id, data)
        if node is self.table.node:
            wanted.append(row)
        elif self.expand and shown:
            assert frame is not None
            frame.setdefault(node.name, []).append(data)
        self._fill(row, read_row, node)
        written = node is self.table.node or (self.expand and shown)
        built[read_row.key] = (row, row_link, written)

    @staticmethod
    def _group_frame(data: dict[str, Any], node: Node) -> dict[str, Any] | None:
        """The object inside ``data`` that holds ``node`` (through its groups), if it is written."""
        frame: Any = data
        for step in node.group_steps:
            frame = frame.get(step)
            if not isinstance(frame, dict):
                return None
        return frame  # type: ignore[no-any-return]

    def _fill(self, row: Row, read_row: TableRow, table_node: Node) -> None:
        """The row's values: raw texts for ``$filter``, typed and redacted values in its JSON."""
        by_rel = self.tree.by_rel
        for rel, text in read_row.values.items():
            node = by_rel.get(rel)
            if node is None or node.field is None:
                continue
            row.texts[node.relpath] = text
            frame = self._group_frame(row.data, node)
            if frame is not None and node.name in frame:
                frame[node.name] = odata_value(node.field, text, self.access, self.wkt)

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

    def passes(self, record: SubmissionRecord, root: Row, row: Row) -> bool:
        if self.node is None:
            return True

        def resolve(member: of.Member) -> Any:
            on_root = self._on_root(member)
            target = root if on_root else row
            if member.path == "__id":
                return target.id
            if on_root and member.path.startswith("__system/"):
                return system_value(record, member.path[9:])
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
