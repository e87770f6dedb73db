"""What an XForm declares about entities (ODK's entities spec), and what a submission of it carries.

pyxform writes, for each row of an XLSForm's ``entities`` sheet, an ``<entity>`` element in a ``meta``
block of the primary instance (at the root, or in a repeat: one entity per row), with the attributes
``dataset``, ``id``, ``create``, ``update``, ``baseVersion``, ``trunkVersion``, ``branchId`` and a
``<label>`` child, and an ``entities:saveto="<property>"`` attribute on the bind of each question saved
to the list. The model names the spec version in ``entities:entities-version``. As Central v2026:

- versions 2022.1 to 2025.1 are accepted (2022.1 creates, 2023.1 updates, 2024.1 offline entities,
  2025.1 entities in repeats and several lists in one form); a repeat or more than one list needs 2025.1;
- a question belongs to the nearest declaration above it (its ``meta/entity`` is in the same group or
  repeat, or an enclosing one).

Pure: no database. XForms and submissions are parsed by :mod:`server.safe_xml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from server import errors, safe_xml
from server.entities.lists import valid_list_name, valid_property_name

ENTITIES_NS = "http://www.opendatakit.org/xforms/entities"
XFORMS_NS = "http://www.w3.org/2002/xforms"
OLDEST, NEWEST = (2022, 1), (2025, 1)
REPEATS_FROM = (2025, 1)
_VERSION = re.compile(r"^(\d{4})\.(\d+)\.\d+")
_ABSOLUTE = re.compile(r"(?<![\w)\]])(/[\w.:-]+(?:/[\w.:-]+)+)")
_RELATIVE = re.compile(r"((?:\.\./)+[\w.:-]+(?:/[\w.:-]+)*)")


@dataclass(frozen=True)
class Declaration:
    """One ``<entity>`` of a form: the list it fills, what it may do, and where its data is."""

    dataset: str
    actions: tuple[str, ...]  # "create", "update"
    container: str  # path of the element holding meta/entity, relative to the root ("" = the root)
    repeat: bool
    properties: tuple[tuple[str, str], ...]  # (question path relative to the container, property)
    # Absolute paths (/data/...) of the questions saved to properties, and of those the label is made of.
    property_paths: tuple[tuple[str, str], ...] = ()
    label_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntityForm:
    version: str
    declarations: tuple[Declaration, ...]

    @property
    def list_names(self) -> list[str]:
        return list(dict.fromkeys(d.dataset for d in self.declarations))


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _path(el: etree._Element, root: etree._Element) -> str:
    steps = []
    while el is not root and el is not None:
        steps.append(_local(el))
        el = el.getparent()
    return "/" + "/".join(reversed(steps)) if steps else ""


def _strip_prefixes(path: str) -> str:
    return "/".join(s.rsplit(":", 1)[-1] for s in path.split("/"))


def _version_tuple(version: str) -> tuple[int, int] | None:
    found = _VERSION.match(version.strip())
    return (int(found.group(1)), int(found.group(2))) if found else None


def _label_paths(calculate: str, label_path: str) -> list[str]:
    """The questions a label's calculation reads: absolute paths, and ``../`` paths from the label."""
    paths = [p for p in _ABSOLUTE.findall(calculate) if ".." not in p]
    for rel in _RELATIVE.findall(calculate):
        steps = label_path.split("/")
        parts = rel.split("/")
        while parts and parts[0] == "..":
            steps.pop()
            parts.pop(0)
        paths.append("/".join(steps + parts))
    return paths


def read_declarations(xml: str | bytes) -> EntityForm | None:
    """The entity declarations of an XForm (None when it declares none); 400.25 when they are invalid."""
    root = safe_xml.parse(xml)
    model = root.find(f"{{http://www.w3.org/1999/xhtml}}head/{{{XFORMS_NS}}}model")
    if model is None:
        return None
    instance = model.find(f"{{{XFORMS_NS}}}instance")
    primary = None if instance is None else next((c for c in instance if isinstance(c.tag, str)), None)
    if primary is None:
        return None
    found: dict[str, etree._Element] = {}
    for el in primary.iter():
        if not isinstance(el.tag, str) or _local(el) != "entity":
            continue
        parent = el.getparent()
        if parent is None or _local(parent) != "meta":
            continue
        found.setdefault(_path(el, primary), el)  # a repeat's template and first row: one declaration
    if not found:
        return None
    version = next((v for k, v in model.attrib.items() if etree.QName(k).localname == "entities-version"), "")
    parsed = _version_tuple(version)
    if not version.strip():
        raise errors.invalid_entity_form("Entities specification version is missing.")
    if parsed is None or not OLDEST <= parsed <= NEWEST:
        raise errors.invalid_entity_form(f"Entities specification version [{version}] is not supported.")
    root_step = "/" + _local(primary)
    repeats = {
        _strip_prefixes(r.get("nodeset", ""))
        for r in root.iter(f"{{{XFORMS_NS}}}repeat")
        if r.get("nodeset", "").startswith("/")
    }
    binds = [b for b in model.iterfind(f"{{{XFORMS_NS}}}bind") if b.get("nodeset")]
    containers = {path: path.removesuffix("/meta/entity") for path in found}
    by_container: dict[str, list[tuple[str, str]]] = {c: [] for c in containers.values()}
    labels: dict[str, list[str]] = {c: [] for c in containers.values()}
    for bind in binds:
        nodeset = _strip_prefixes(bind.get("nodeset", ""))
        if not nodeset.startswith(root_step + "/") and nodeset != root_step:
            continue
        relative = nodeset[len(root_step) :]
        saveto = bind.get(f"{{{ENTITIES_NS}}}saveto")
        if saveto is not None:
            owner = max(
                (c for c in by_container if (relative + "/").startswith(c + "/")), key=len, default=None
            )
            if owner is None:
                raise errors.invalid_entity_form(f"The question {nodeset} is saved to no entity list.")
            if not valid_property_name(saveto.strip()):
                raise errors.invalid_entity_form(f"Invalid entity property name {saveto!r}.")
            by_container[owner].append((relative[len(owner) :], saveto.strip()))
        for container in labels:
            if relative == f"{container}/meta/entity/label" and bind.get("calculate"):
                labels[container] += _label_paths(bind.get("calculate", ""), nodeset)
    declarations = []
    for path, el in found.items():
        attrs = {etree.QName(k).localname: v for k, v in el.attrib.items()}
        name = (attrs.get("dataset") or "").strip()
        if not name:
            raise errors.invalid_entity_form("Dataset name is missing.")
        if not valid_list_name(name):
            raise errors.invalid_entity_form(f"Invalid dataset name {name!r}.")
        actions = tuple(a for a in ("create", "update") if a in attrs)
        if not actions:
            raise errors.invalid_entity_form(
                "The form must specify at least one entity action, for example, create or update."
            )
        container = containers[path]
        props = tuple(by_container[container])
        declarations.append(
            Declaration(
                dataset=name,
                actions=actions,
                container=container,
                repeat=root_step + container in repeats,
                properties=props,
                property_paths=tuple((root_step + container + rel, p) for rel, p in props),
                label_paths=tuple(_strip_prefixes(p) for p in labels[container]),
            )
        )
    if (len(declarations) > 1 or any(d.repeat for d in declarations)) and parsed < REPEATS_FROM:
        raise errors.invalid_entity_form(
            f"Entities specification version [{version}] is not compatible with entities from repeats or "
            "multiple entity lists. Please use version 2025.1.0 or later."
        )
    return EntityForm(version.strip(), tuple(declarations))


@dataclass
class EntityData:
    """One entity as a submission carries it: Central's ``system`` attributes and the saved data."""

    index: int  # its place among the submission's entities (document order, declaration by declaration)
    dataset: str
    actions: tuple[str, ...]
    id: str | None
    create: str | None
    update: str | None
    base_version: str | None
    trunk_version: str | None
    branch_id: str | None
    label: str | None
    data: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def flag(value: str | None) -> bool:
        return value in ("1", "true")


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and _local(c) == name]


def _descend(el: etree._Element, relative: str) -> list[etree._Element]:
    """Every element at ``relative`` (``/r/meta``) under ``el``: a repeat gives one per row."""
    found = [el]
    for step in (s for s in relative.split("/") if s):
        found = [c for parent in found for c in _children(parent, step.rsplit(":", 1)[-1])]
    return found


def extract(form: EntityForm, xml: str | bytes) -> list[EntityData]:
    """The entities a submission of ``form`` carries, in a stable order (their ``index``)."""
    root = safe_xml.parse(xml)
    out: list[EntityData] = []
    for declaration in form.declarations:
        for container in _descend(root, declaration.container):
            entity_el = next(iter(_descend(container, "/meta/entity")), None)
            if entity_el is None:
                continue
            attrs = {etree.QName(k).localname: v for k, v in entity_el.attrib.items()}
            label_el = next(iter(_children(entity_el, "label")), None)
            data: dict[str, str] = {}
            for relative, prop in declaration.properties:
                values = _descend(container, relative)
                if values:
                    data[prop] = values[0].text or ""
            out.append(
                EntityData(
                    index=len(out),
                    dataset=(attrs.get("dataset") or "").strip(),
                    actions=declaration.actions,
                    id=attrs.get("id"),
                    create=attrs.get("create"),
                    update=attrs.get("update"),
                    base_version=attrs.get("baseVersion"),
                    trunk_version=attrs.get("trunkVersion"),
                    branch_id=attrs.get("branchId"),
                    label=None if label_el is None else (label_el.text or ""),
                    data=data,
                )
            )
    return out
