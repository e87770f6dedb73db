"""Submission XML bytes → what ingest needs to know about them. Pure: no database, no files.

The XML comes from devices and tools we do not control, so it is parsed by :mod:`server.safe_xml` (no
DTD, no entities, no network, libxml2's depth and size limits).

Paths are compared by local names only (``/meta/instanceID`` whatever the prefix), relative to the root
element: Collect writes ``meta`` unprefixed, encrypted envelopes write ``orx:meta``, and the root may be
named ``data`` or after the form.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lxml import etree

from server import errors, safe_xml
from server.forms.xform import local_attribute
from server.url_ids import id_problem

ENCRYPTED_NS = "http://www.opendatakit.org/xforms/encrypted"
MAX_NAME_LENGTH = 255
_FORBIDDEN_IN_NAMES = ("/", "\\", "\x00", "..")
_BARE_AMPERSAND = re.compile(rb"&(?!(?:[A-Za-z_:][\w.:-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")


@dataclass(frozen=True)
class ParsedSubmission:
    """One submission XML document, as received, with the identity fields ingest decides on."""

    xml_bytes: bytes
    xml: str  # the same bytes decoded (UTF-8): what is stored and served back
    sha256: str  # of the exact bytes received: a version's identity
    form_id: str
    version: str  # "" when the root has no version attribute
    instance_id: str
    deprecated_id: str | None
    instance_name: str | None
    encrypted: bool
    # Values of leaf elements by local-name path relative to the root ("/meta/audit"), in document order:
    # a path inside a repeat appears once per row.
    leaves: tuple[tuple[str, str], ...]
    # Encrypted envelopes name their files themselves: the <media><file> names, then encryptedXmlFile.
    encrypted_files: tuple[str, ...] = ()

    def values_at(self, paths: Iterable[str]) -> Iterator[str]:
        wanted = set(paths)
        for path, value in self.leaves:
            if path in wanted:
                yield value


def relative_path(field_path: str) -> str:
    """``/data/orx:meta/orx:instanceID`` → ``/meta/instanceID``: the form of paths in ``leaves``."""
    steps = [s.rsplit(":", 1)[-1] for s in field_path.split("/") if s]
    return "/" + "/".join(steps[1:])


def check_attachment_name(name: str) -> str:
    """The name of an uploaded file, refused when it could be mistaken for a path or is absurdly long.

    Blobs are stored by content hash, so names never reach the file system; this keeps them harmless in
    exports (zip entries) and in the device's view too.
    """
    if not name or len(name) > MAX_NAME_LENGTH or any(bad in name for bad in _FORBIDDEN_IN_NAMES):
        raise errors.bad_request(
            f"The attachment name {name[:80]!r} is not accepted: a plain file name of at most "
            f"{MAX_NAME_LENGTH} characters, without '/', '\\' or '..', is required.",
            name=name[:MAX_NAME_LENGTH],
        )
    if any(ord(c) < 32 for c in name):
        raise errors.bad_request("An attachment name contains control characters.", name=name)
    return name


def is_plain_name(name: str) -> bool:
    try:
        check_attachment_name(name)
    except errors.Problem:
        return False
    return True


def _refuse_doctype() -> errors.Problem:
    return errors.bad_request("Submission XML with a DOCTYPE or entity declarations is not accepted.")


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _walk(root: etree._Element) -> list[tuple[str, str]]:
    """(path, text) of every leaf element, by local names relative to the root."""
    leaves: list[tuple[str, str]] = []
    stack: list[tuple[etree._Element, str]] = [(child, "") for child in reversed(root)]
    while stack:
        el, parent = stack.pop()
        if not isinstance(el.tag, str):
            continue
        path = f"{parent}/{_local(el)}"
        children = [c for c in el if isinstance(c.tag, str)]
        if children:
            stack.extend((c, path) for c in reversed(children))
        else:
            leaves.append((path, (el.text or "").strip()))
    return leaves


def _first(leaves: list[tuple[str, str]], path: str) -> str | None:
    for p, value in leaves:
        if p == path and value:
            return value
    return None


def _escape_bare_ampersands(xml_bytes: bytes) -> bytes | None:
    """The XML with each ``&`` that starts no entity or character reference written as ``&amp;``, or
    None when there is none. Central's lenient parser reads such an ``&`` as itself, and pyodk's own
    tests send instanceIDs like ``sena_~~!@#$%^&*()``; the repaired document says the same text in
    well-formed XML, and it is what is stored (resending the same bytes repairs them the same way)."""
    repaired = _BARE_AMPERSAND.sub(b"&amp;", xml_bytes)
    return repaired if repaired != xml_bytes else None


def parse_submission(xml_bytes: bytes, max_bytes: int) -> ParsedSubmission:
    """Parse and identify a submission, or raise a Problem a device can show (400, 413)."""
    if len(xml_bytes) > max_bytes:
        raise errors.too_large(max_bytes)
    if not xml_bytes.strip():
        raise errors.bad_request("The submission XML (xml_submission_file) is empty.")
    if b"<!DOCTYPE" in xml_bytes or b"<!ENTITY" in xml_bytes:
        raise _refuse_doctype()
    try:
        xml = xml_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.bad_request("The submission XML must be encoded in UTF-8.") from None
    try:
        root = safe_xml.parse(xml_bytes)
    except safe_xml.Malformed as exc:
        repaired = _escape_bare_ampersands(xml_bytes)
        if repaired is None:
            raise errors.bad_request(
                f"The submission is not well-formed XML: {exc.msg}", line=exc.lineno
            ) from None
        return parse_submission(repaired, max_bytes)
    except safe_xml.DoctypeRefused:
        raise _refuse_doctype() from None

    # Read as Central reads them: whatever the prefix (older tools write orx:version="1.0").
    form_id = (local_attribute(root, "id") or "").strip()
    if not form_id:
        raise errors.bad_request(
            "The submission does not say which form it belongs to (no id attribute on its root element)."
        )
    version = (local_attribute(root, "version") or "").strip()
    leaves = _walk(root)
    instance_id = _first(leaves, "/meta/instanceID") or (root.get("instanceID") or "").strip()
    if not instance_id:
        raise errors.bad_request("The submission has no meta/instanceID.")
    if len(instance_id) > 255 or len(form_id) > 255 or len(version) > 255:
        raise errors.bad_request("The form id, version or instanceID is longer than 255 characters.")
    for name, value in (("instanceID", instance_id), ("form id", form_id)):
        if why := id_problem(value):
            raise errors.bad_request(f"The submission's {name} {value[:80]!r} is not accepted: {why}.")
    deprecated_id = _first(leaves, "/meta/deprecatedID")
    instance_name = _first(leaves, "/meta/instanceName")

    encrypted = etree.QName(root).namespace == ENCRYPTED_NS or root.get("encrypted") == "yes"
    encrypted_files: tuple[str, ...] = ()
    if encrypted:
        media = [value for path, value in leaves if path == "/media/file" and value]
        xml_file = _first(leaves, "/encryptedXmlFile")
        encrypted_files = tuple(dict.fromkeys([*media, *([xml_file] if xml_file else [])]))
    return ParsedSubmission(
        xml_bytes=xml_bytes,
        xml=xml,
        sha256=hashlib.sha256(xml_bytes).hexdigest(),
        form_id=form_id,
        version=version,
        instance_id=instance_id,
        deprecated_id=deprecated_id[:255] if deprecated_id else None,
        instance_name=instance_name[:500] if instance_name else None,
        encrypted=encrypted,
        leaves=tuple(leaves),
        encrypted_files=encrypted_files,
    )


def expected_attachments(parsed: ParsedSubmission, binary_paths: frozenset[str]) -> list[str]:
    """The file names a submission says it comes with, in document order, without duplicates.

    ``binary_paths`` are the form's binary fields as :func:`relative_path` gives them (photos, audio,
    signatures, ``meta/audit``). An encrypted envelope lists its own files. Names that could not be
    uploaded anyway (paths, over-long) are left out: they cannot be matched to a file.
    """
    if parsed.encrypted:
        names: Iterable[str] = parsed.encrypted_files
    else:
        names = (v for v in parsed.values_at(binary_paths | {"/meta/audit"}) if v)
    return [n for n in dict.fromkeys(names) if is_plain_name(n)]


def encrypted_xml_file(envelope: str) -> str | None:
    """The ``encryptedXmlFile`` an encrypted envelope (already accepted by ingest) names, or None."""
    try:
        root = safe_xml.parse(envelope)
    except safe_xml.UnsafeXml:
        return None
    return _first(_walk(root), "/encryptedXmlFile")
