"""The one way Sarhad parses XML it did not write: submissions, XForms, stored copies of either, and the
instance files the sync client finds on a phone.

Every document is untrusted, so every parse is the same: a DOCTYPE or an entity declaration is refused
before parsing and again after (billion laughs, external entities, file reads), the parser resolves no
entities, loads no DTD, reaches no network and drops processing instructions, and ``huge_tree`` stays
off, so libxml2's own limits hold: nesting deeper than :data:`MAX_DEPTH` levels or a text node larger
than 10 MB is malformed XML. Callers give a size limit when the document comes from outside.

Callers turn the three refusals (:class:`TooLarge`, :class:`DoctypeRefused`, :class:`Malformed`) into
their own answers: a 400/413 for a device, a note in a sync report.
"""

from __future__ import annotations

from lxml import etree

# libxml2's limit without XML_PARSE_HUGE (huge_tree=False): deeper documents fail as malformed.
MAX_DEPTH = 256


class UnsafeXml(ValueError):
    """A document this module refuses to parse."""


class TooLarge(UnsafeXml):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"The XML is larger than {max_bytes} bytes.")
        self.max_bytes = max_bytes


class DoctypeRefused(UnsafeXml):
    def __init__(self) -> None:
        super().__init__("XML with a DOCTYPE or entity declarations is not accepted.")


class Malformed(UnsafeXml):
    """Not well-formed XML (or beyond libxml2's depth and size limits); ``msg`` and ``lineno`` as lxml's."""

    def __init__(self, msg: str, lineno: int | None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.lineno = lineno


def _parser(*, keep_comments: bool) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,
        remove_comments=not keep_comments,
    )


# lxml parsers may be shared between threads (each parse gets its own context); building one per call
# would cost more than the parse of a small submission.
_READING = _parser(keep_comments=False)
_REWRITING = _parser(keep_comments=True)


def parse(data: bytes | str, *, max_bytes: int | None = None, keep_comments: bool = False) -> etree._Element:
    """The root element of ``data``, parsed safely.

    ``keep_comments`` is for documents written back out (an XForm given a version); readers of values
    drop comments so that ``<a>x<!-- -->y</a>`` reads ``xy``.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if max_bytes is not None and len(raw) > max_bytes:
        raise TooLarge(max_bytes)
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise DoctypeRefused()
    try:
        root = etree.fromstring(raw, _REWRITING if keep_comments else _READING)
    except etree.XMLSyntaxError as exc:
        raise Malformed(exc.msg, exc.lineno) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise DoctypeRefused()
    return root
