"""A stored submission as one requester may see it: the XML download and the files it may open.

Both read the submission with :mod:`server.datasets.reader` (the walk every format uses) and its
``visit`` hook, so a value is hidden here exactly when the exports hide it.
"""

from __future__ import annotations

from lxml import etree

from server.datasets.reader import UnreadableXml, read
from server.datasets.redact import Access, Treatment, redact_value
from server.datasets.schema import Field, FormSchema
from server.safe_xml import parse

__all__ = ["redacted_xml", "shown_attachment_names"]


def _has_elements(el: etree._Element) -> bool:
    return any(isinstance(child.tag, str) for child in el)


def _blank_leaves(el: etree._Element) -> None:
    """Empty every leaf under (and at) ``el``: no published version says these values are harmless."""
    for node in el.iter():
        if isinstance(node.tag, str) and not _has_elements(node):
            node.text = None


def redacted_xml(xml: str, schema: FormSchema, access: Access, instance_id: str = "") -> bytes:
    """The submission XML as this requester may see it: untouched for raw access; otherwise every
    personal value replaced as :mod:`server.datasets.redact` says (dropped values become empty), and
    every element no published version knows emptied."""
    if access.raw:
        return xml.encode("utf-8")
    # Comments kept: the redacted copy is the stored document with values replaced, nothing else.
    root = parse(xml, keep_comments=True)

    def visit(field: Field | None, el: etree._Element) -> None:
        if field is None:
            _blank_leaves(el)
            return
        if _has_elements(el):
            if field.group or field.repeat:
                return  # the walk goes on inside
            for child in el:  # a question holding elements: none of them known
                if isinstance(child.tag, str):
                    _blank_leaves(child)
        if el.text is not None:
            el.text = redact_value(access, field, el.text) or None

    for _ in read(root, schema.by_rel, instance_id, visit):
        pass
    return etree.tostring(root, xml_declaration=False, encoding="utf-8")


def shown_attachment_names(xml: str, schema: FormSchema, access: Access) -> set[str] | None:
    """Names of the files this requester may have; None = all of them (raw access)."""
    if access.raw:
        return None
    allowed: set[str] = set()

    def visit(field: Field | None, el: etree._Element) -> None:
        if field is not None and field.binary and el.text and access.treatment(field) is Treatment.RAW:
            allowed.add(el.text.strip())

    try:
        for _ in read(xml, schema.by_rel, "", visit):
            pass
    except UnreadableXml:
        return set()
    return allowed
