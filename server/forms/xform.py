"""Read an XForm safely: its id, version, title, encryption key, media and fields.

XForms come from pyxform or straight from coordinators and tools (pyodk), so the parser refuses what
could make it read files, reach the network or blow up in memory: DOCTYPEs and entity declarations,
documents over ``max_xml_bytes``, and lxml's ``huge_tree`` mode.

``fields`` is what ingest and the exports rely on, one entry per node of the primary instance (the root
itself excluded) in document order:

- ``path``: ``/data/group/question``, as the binds name it (a namespaced node keeps its prefix,
  ``/data/orx:meta/orx:instanceID``);
- ``name``: the node's name (last step of the path);
- ``type``: the bind type (``string``, ``int``, ``decimal``, ``date``, ``dateTime``, ``time``,
  ``geopoint``, ``geotrace``, ``geoshape``, ``binary``, ``barcode``...), ``select1``/``select`` for choice
  questions (pyxform binds them as ``string``), ``structure`` for a group and ``repeat`` for a repeat;
- ``group``: the node holds other nodes (a group or a repeat); ``repeat``: it is a repeat;
- ``repeat_path``: the path of the nearest enclosing repeat (the node's own path for a repeat), or None;
- ``binary``: the value names an attachment (photo, audio, signature, ``meta/audit``...);
- ``sensitivity``: ``personal`` | ``sensitive`` | None, from the bind attribute ``sarhad:sensitivity``
  (namespace ``https://sarhad.tj/xforms``); a node without its own tag takes its nearest tagged group's.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from lxml import etree

from server import errors, safe_xml
from server.url_ids import id_problem

XFORMS_NS = "http://www.w3.org/2002/xforms"
XHTML_NS = "http://www.w3.org/1999/xhtml"
ORX_NS = "http://openrosa.org/xforms"
SARHAD_NS = "https://sarhad.tj/xforms"
SENSITIVITIES = ("personal", "sensitive")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_TITLE_LENGTH = 500  # FormVersion.title
_SPREADSHEET_NAME = re.compile(r"\.(xlsx?|xml)$")

_MEDIA_URI = re.compile(r"jr://(images|audio|video|file|file-csv)/([^\s'\"<>)]+)")
# pulldata('districts', ...) and the search('jamoats') appearance read <name>.csv from the form's media.
_CSV_FUNCTION = re.compile(r"\b(?:pulldata|search)\(\s*['\"]([^'\"]+)['\"]")
_MEDIA_KIND = {"images": "image", "audio": "audio", "video": "video", "file": "file", "file-csv": "file"}
_CHOICE_CONTROLS = {"select1": "select1", "select": "select"}


@dataclass(frozen=True)
class MediaRef:
    name: str
    kind: str  # image | audio | video | file, as ODK Central names attachment types


@dataclass(frozen=True)
class FieldInfo:
    path: str
    name: str
    type: str
    repeat: bool
    group: bool
    sensitivity: str | None
    binary: bool
    repeat_path: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class XFormInfo:
    form_id: str
    version: str
    title: str  # exactly as written; "" when the form has none
    public_key: str | None
    root_name: str
    media: tuple[MediaRef, ...]
    fields: tuple[FieldInfo, ...]

    @property
    def media_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.media)

    def field_dicts(self) -> list[dict[str, Any]]:
        """``fields`` as plain dicts, the shape stored in ``FormVersion.fields``."""
        return [f.as_dict() for f in self.fields]


def _q(tag: str, ns: str = XFORMS_NS) -> str:
    return f"{{{ns}}}{tag}"


def _parse_tree(xml: str | bytes, max_bytes: int) -> etree._Element:
    # Nothing in an XForm needs a DTD, and entities are how XML bombs and file reads (XXE) get in.
    # Comments are kept: a form given a version is written back out.
    try:
        return safe_xml.parse(xml, max_bytes=max_bytes, keep_comments=True)
    except safe_xml.TooLarge:
        raise errors.too_large(max_bytes) from None
    except safe_xml.DoctypeRefused as exc:
        raise errors.invalid_form(str(exc)) from None
    except safe_xml.Malformed as exc:
        raise errors.invalid_form(f"The XForm is not well-formed XML: {exc.msg}", line=exc.lineno) from None


def _model_and_instance(root: etree._Element) -> tuple[etree._Element, etree._Element]:
    if root.tag != _q("html", XHTML_NS):
        raise errors.invalid_form("This is not an XForm: its root element is not h:html.")
    model = root.find(f"{_q('head', XHTML_NS)}/{_q('model')}")
    if model is None:
        raise errors.invalid_form("The XForm has no <model> in its <h:head>.")
    instance = model.find(_q("instance"))
    primary = None if instance is None else next((c for c in instance if isinstance(c.tag, str)), None)
    if primary is None:
        raise errors.invalid_form("The XForm has no primary <instance> with a root element.")
    return model, primary


def _step(el: etree._Element) -> str:
    local = etree.QName(el).localname
    return f"{el.prefix}:{local}" if el.prefix else local


def _body_refs(body: etree._Element | None) -> tuple[set[str], dict[str, str]]:
    """Absolute paths of the repeats, and of each control's ref → its element name."""
    repeats: set[str] = set()
    controls: dict[str, str] = {}
    if body is None:
        return repeats, controls

    def visit(el: etree._Element, context: str) -> None:
        for child in el:
            if not isinstance(child.tag, str):
                continue
            ref = child.get("nodeset") if child.tag == _q("repeat") else child.get("ref")
            here = context
            if ref and not ref.startswith(("jr:", "instance(")):
                here = ref if ref.startswith("/") else f"{context}/{ref}"
                if child.tag == _q("repeat"):
                    repeats.add(here)
                else:
                    controls.setdefault(here, etree.QName(child).localname)
            visit(child, here)

    visit(body, "")
    return repeats, controls


def _field_type(path: str, has_children: bool, is_repeat: bool, bind: Any, control: str | None) -> str:
    if is_repeat:
        return "repeat"
    if has_children:
        return "structure"
    if control in _CHOICE_CONTROLS:
        return _CHOICE_CONTROLS[control]
    bind_type = (bind.get("type") if bind is not None else None) or "string"
    if bind_type.startswith("xsd:"):
        bind_type = bind_type[4:]
    if bind_type.lower() == "base64binary" or control == "upload":
        return "binary"
    return bind_type


def _fields(primary: etree._Element, model: etree._Element, body: etree._Element | None) -> list[FieldInfo]:
    binds = {b.get("nodeset"): b for b in model.iterfind(_q("bind")) if b.get("nodeset")}
    repeats, controls = _body_refs(body)
    fields: dict[str, FieldInfo] = {}

    def walk(el: etree._Element, path: str, repeat_path: str | None, inherited: str | None) -> None:
        for child in el:
            if not isinstance(child.tag, str):
                continue
            child_path = f"{path}/{_step(child)}"
            bind = binds.get(child_path)
            own = (bind.get(_q("sensitivity", SARHAD_NS)) or "").strip().lower() if bind is not None else ""
            sensitivity = own if own in SENSITIVITIES else inherited
            has_children = any(isinstance(c.tag, str) for c in child)
            is_repeat = child_path in repeats
            inner_repeat = child_path if is_repeat else repeat_path
            # A repeat appears twice in pyxform's instance (its jr:template and a first copy): keep one.
            if child_path not in fields:
                kind = _field_type(child_path, has_children, is_repeat, bind, controls.get(child_path))
                fields[child_path] = FieldInfo(
                    path=child_path,
                    name=_step(child),
                    type=kind,
                    repeat=is_repeat,
                    group=has_children or is_repeat,
                    sensitivity=sensitivity,
                    binary=kind == "binary",
                    repeat_path=inner_repeat,
                )
            walk(child, child_path, inner_repeat, sensitivity)

    walk(primary, f"/{_step(primary)}", None, None)
    return list(fields.values())


def _media(root: etree._Element) -> list[MediaRef]:
    found: dict[str, MediaRef] = {}

    def add(name: str, kind: str) -> None:
        name = name.strip()
        if name and name not in found:
            found[name] = MediaRef(name, kind)

    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        texts = [el.text or "", *el.attrib.values()]
        for text in texts:
            for scheme, name in _MEDIA_URI.findall(text):
                add(name, _MEDIA_KIND[scheme])
        for value in el.attrib.values():
            for name in _CSV_FUNCTION.findall(value):
                add(name if name.lower().endswith(".csv") else f"{name}.csv", "file")
    return list(found.values())


def local_attribute(el: etree._Element, name: str) -> str | None:
    """The attribute ``name`` whatever its namespace prefix, as Central reads ``id`` and ``version``:
    forms and submissions from older tools write ``orx:version="1.0"`` on the instance root. An attribute
    without a prefix wins; otherwise the first in document order."""
    plain = el.get(name)
    if plain is not None:
        return plain
    return next((v for k, v in el.attrib.items() if etree.QName(k).localname == name), None)


def check_form_id(form_id: str) -> None:
    """A form id may hold any character (slashes, quotes, percent signs, emoji) except control
    characters and '.'/'..' segments, up to 255 characters; like Central, not end in .xls/.xlsx/.xml."""
    why = id_problem(form_id) or ("it is longer than 255 characters" if len(form_id) > 255 else None)
    if why is None and _SPREADSHEET_NAME.search(form_id):
        why = "it ends in .xls, .xlsx or .xml (name the form in its settings sheet, or rename the file)"
    if why:
        shown = form_id[:300]
        raise errors.invalid_form(f"The form id {shown!r} cannot be used: {why}.", xmlFormId=shown)


def parse_xform(xml: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> XFormInfo:
    """Everything Sarhad needs to know about an XForm; an ``invalid_form`` Problem when it is not one."""
    root = _parse_tree(xml, max_bytes)
    model, primary = _model_and_instance(root)
    form_id = (local_attribute(primary, "id") or "").strip()
    if not form_id:
        raise errors.invalid_form("The XForm's primary instance has no id attribute (the form id).")
    check_form_id(form_id)
    version = (local_attribute(primary, "version") or "").strip()
    if len(version) > 255:
        raise errors.invalid_form("The form version is longer than 255 characters.")
    title_el = root.find(f"{_q('head', XHTML_NS)}/{_q('title', XHTML_NS)}")
    # Kept exactly as written (Central's form name); a form without one has no name.
    title = "".join(title_el.itertext()) if title_el is not None else ""
    if len(title) > MAX_TITLE_LENGTH:
        raise errors.invalid_form(f"The form title is longer than {MAX_TITLE_LENGTH} characters.")
    submission = model.find(_q("submission"))
    key = submission.get("base64RsaPublicKey") if submission is not None else None
    return XFormInfo(
        form_id=form_id,
        version=version,
        title=title,
        public_key=("".join(key.split()) or None) if key else None,
        root_name=_step(primary),
        media=tuple(_media(root)),
        fields=tuple(_fields(primary, model, root.find(_q("body", XHTML_NS)))),
    )


def with_version(xml: str, version: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The XForm with its primary instance's ``version`` attribute set (publishing with ``?version=``)."""
    root = _parse_tree(xml, max_bytes)
    _, primary = _model_and_instance(root)
    primary.set("version", version)
    body = etree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0"?>\n{body}' if xml.lstrip().startswith("<?xml") else body


def with_public_key(xml: str, public_key: str, version: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The XForm encrypted for ``public_key`` (``<submission base64RsaPublicKey=...>`` in its model, as
    ODK Central's managed encryption writes it) under a new ``version``, so that devices fetch it again."""
    root = _parse_tree(xml, max_bytes)
    model, primary = _model_and_instance(root)
    submission = model.find(_q("submission"))
    if submission is None:
        submission = etree.SubElement(model, _q("submission"))
    submission.set("base64RsaPublicKey", public_key)
    primary.set("version", version)
    body = etree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0"?>\n{body}' if xml.lstrip().startswith("<?xml") else body
