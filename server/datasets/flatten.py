"""One submission's XML → a root row and repeat rows, in ODK Central's shape.

- Values are keyed by the field's Central path (``/group/question``); columns are named later.
- Each repeat instance is a row of its repeat's table with ``KEY`` = the instance ID, then each group
  name and ``repeat[n]`` on the way down (``uuid:x/group/repeat[2]``), and ``PARENT_KEY`` = the KEY of the
  repeat instance around it, or the instance ID at the top. Counting restarts inside each repeat instance.
- Elements the schema does not know (and everything under them) are ignored, as Central does.
- A leaf's value is its text, untouched (cleaning is :mod:`server.datasets.clean`'s job); an element that
  appears twice has its texts concatenated, as Central does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from lxml import etree

from server import safe_xml
from server.datasets.schema import Field


class UnreadableXml(Exception):
    """The stored XML of a submission version cannot be parsed (never expected: ingest checked it)."""


@dataclass
class TableRow:
    """A row of the root table (``table`` None) or of a repeat's table (``table`` = the repeat's path)."""

    table: str | None
    key: str
    parent_key: str | None
    values: dict[str, str] = field(default_factory=dict)


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :] if tag[0] == "{" else tag.split(":")[-1]


def flatten(xml: str | bytes, fields: Mapping[str, Field], instance_id: str) -> Iterator[TableRow]:
    """Yield the root row first, then every repeat row in document order.

    ``fields`` maps Central paths to fields (``FormSchema.by_rel``); ``instance_id`` is the submission's
    (the KEY of its root row and the start of every repeat KEY).
    """
    try:
        root = safe_xml.parse(xml)
    except safe_xml.UnsafeXml as exc:
        raise UnreadableXml(str(exc)) from None
    root_row = TableRow(None, instance_id, None)
    repeats: list[TableRow] = []
    _walk(root, "", root_row.values, [instance_id], {}, instance_id, fields, repeats)
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
        if f is None:
            continue
        if f.repeat:
            count = counters.get(rel, 0) + 1
            counters[rel] = count
            parts = [*key_parts, f"{name}[{count}]"]
            row = TableRow(rel, "/".join(parts), parent_key)
            out.append(row)
            _walk(child, rel, row.values, parts, {}, row.key, fields, out)
        elif f.group:
            _walk(child, rel, values, [*key_parts, name], counters, parent_key, fields, out)
        else:
            text = child.text
            if text is not None:
                values[rel] = values[rel] + text if rel in values else text


# (parent path, element tag) → (local name, path): the same few tags are met in every submission.
_STEPS: dict[tuple[str, str], tuple[str, str]] = {}
