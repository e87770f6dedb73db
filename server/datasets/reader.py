"""The one reader of a submission: its XML, walked once with the form's schema, as a root row and repeat
rows. Every format reads submissions through it: the CSV zip, XLSX, JSONL and GeoJSON (through
:mod:`server.datasets.tables`), OData (:mod:`server.datasets.odata_rows`), reports, and the redacted XML
download (through the ``visit`` hook).

- Values are keyed by the field's Central path (``/group/question``); columns are named later.
- Each repeat instance is a row of its repeat's table with ``KEY`` = the instance ID, then each group
  name and ``repeat[n]`` on the way down (``uuid:x/group/repeat[2]``), and ``PARENT_KEY`` = the KEY of the
  repeat instance around it, or the instance ID at the top. Counting restarts inside each repeat instance
  and goes on across groups met twice (``<g><r/></g><g><r/></g>`` is ``r[1]`` and ``r[2]``), as Central.
- Each row has Central's OData id too (:meth:`TableRow.odata_id`): the SHA-1 of
  ``Submissions#<instance id>`` and, on the way down, ``<group>#`` or ``<repeat>#<n>`` (n from 0),
  joined with ``%%`` (the KEY's steps, written Central's way); the instance ID for the root row.
- Elements the schema does not know (and everything under them) are ignored, as Central does.
- A leaf's value is its text, untouched (cleaning is :mod:`server.datasets.clean`'s job); an element that
  appears twice has its texts concatenated, as Central does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from lxml import etree

from server import safe_xml
from server.datasets.schema import Field

# Called for every element the schema knows (with its field; groups and repeats before their insides) and
# for every element it does not know (with None; its subtree is not walked): how the redacted XML
# download rewrites the document.
Visit = Callable[[Field | None, etree._Element], None]


class UnreadableXml(Exception):
    """The stored XML of a submission version cannot be parsed (never expected: ingest checked it)."""


@dataclass
class TableRow:
    """A row of the root table (``table`` None) or of a repeat's table (``table`` = the repeat's path)."""

    table: str | None
    key: str
    parent_key: str | None
    values: dict[str, str] = field(default_factory=dict)

    def odata_id(self, instance_id: str) -> str:
        """Central's OData id of this row, from its KEY (which already names every group and repeat
        on the way down; element names hold no ``/`` or ``[``)."""
        if self.table is None:
            return self.key
        parts = [f"Submissions#{instance_id}"]
        for step in self.key[len(instance_id) + 1 :].split("/"):
            bracket = step.find("[")
            parts.append(f"{step}#" if bracket < 0 else f"{step[:bracket]}#{int(step[bracket + 1 : -1]) - 1}")
        return hashlib.sha1("%%".join(parts).encode("utf-8")).hexdigest()


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :] if tag[0] == "{" else tag.split(":")[-1]


def parse(xml: str | bytes) -> etree._Element:
    """The stored XML of a submission version, parsed (:class:`UnreadableXml` if it cannot be)."""
    try:
        return safe_xml.parse(xml)
    except safe_xml.UnsafeXml as exc:
        raise UnreadableXml(str(exc)) from None


def read(
    xml: str | bytes | etree._Element,
    fields: Mapping[str, Field],
    instance_id: str,
    visit: Visit | None = None,
) -> Iterator[TableRow]:
    """Yield the root row first, then every repeat row in document order.

    ``fields`` maps Central paths to fields (``FormSchema.by_rel``); ``instance_id`` is the submission's
    (the KEY of its root row and the start of every repeat KEY); ``visit`` sees the elements as they are
    walked (see :data:`Visit`).
    """
    root = xml if isinstance(xml, etree._Element) else parse(xml)
    root_row = TableRow(None, instance_id, None)
    repeats: list[TableRow] = []
    _walk(root, "", root_row.values, [instance_id], {}, instance_id, fields, repeats, visit)
    yield root_row
    yield from repeats


def _walk(
    el: etree._Element,
    prefix: str,
    values: dict[str, str],
    key_parts: list[str],
    counters: dict[str, int],
    parent_key: str,
    fields: Mapping[str, Field],
    out: list[TableRow],
    visit: Visit | None,
) -> None:
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        step = _STEPS.get((prefix, tag))
        if step is None:
            name = _local(tag)
            step = _STEPS[(prefix, tag)] = (name, f"{prefix}/{name}")
        name, rel = step
        f = fields.get(rel)
        if visit is not None:
            visit(f, child)
        if f is None:
            continue
        if f.repeat:
            count = counters.get(rel, 0) + 1
            counters[rel] = count
            parts = [*key_parts, f"{name}[{count}]"]
            row = TableRow(rel, "/".join(parts), parent_key)
            out.append(row)
            _walk(child, rel, row.values, parts, {}, row.key, fields, out, visit)
        elif f.group:
            _walk(child, rel, values, [*key_parts, name], counters, parent_key, fields, out, visit)
        else:
            text = child.text
            if text is not None:
                values[rel] = values[rel] + text if rel in values else text


# (parent path, element tag) → (local name, path): the same few tags are met in every submission.
_STEPS: dict[tuple[str, str], tuple[str, str]] = {}
