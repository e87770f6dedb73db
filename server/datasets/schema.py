"""The table shape of a form: its fields merged across versions, with labels and choices in en/tg/ru.

Fields come from ``FormVersion.fields`` (parsed at publish time by ``server.forms.xform``); labels,
choices, ``required``/``constraint``/``relevant`` and appearances come from each version's XForm.

- A field's ``rel`` path is ODK Central's: without the root element and without namespace prefixes
  (``/data/orx:meta/orx:instanceID`` → ``/meta/instanceID``). Column names are built from it.
- Merging versions follows Central's ``deletedFields=true`` rule: start from the oldest version; each
  newer version's field list wins, and a field it no longer has is put back, with its children, after
  the last field of its parent group. Every field knows which versions have it.
- Labels: XForm itext languages are named like ``English (en)``, ``Tajik (tg)``, ``Russian (ru)``; a
  language is matched by the code in parentheses (or the whole name), falling back to the form's default
  language, then to the first one, then to plain ``<label>`` text.
- ``select_one_from_file`` choices are read from the form's media CSV when a reader is given.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import safe_xml
from server.models import Form, FormMedia, FormVersion

LANGUAGES = ("en", "tg", "ru")
XF = "{http://www.w3.org/2002/xforms}"
XHTML = "{http://www.w3.org/1999/xhtml}"
_LANG_SUFFIX = re.compile(r"_[A-Za-z]{2,3}")
_LANG_CODE = re.compile(r"\(([A-Za-z_-]+)\)\s*$")
_ITEXT_REF = re.compile(r"""jr:itext\(\s*['"]([^'"]+)['"]\s*\)""")
_INSTANCE_REF = re.compile(r"""instance\(\s*['"]([^'"]+)['"]\s*\)""")
_TRUE = {"true()", "true", "yes"}

MediaReader = Callable[[str], bytes | None]


@dataclass
class Choice:
    value: str
    labels: dict[str, str] = field(default_factory=dict)  # language code → label


@dataclass
class Field:
    """One node of the submission, as the exports see it."""

    path: str  # as the binds name it: /data/orx:meta/orx:instanceID
    rel: str  # Central's path: /meta/instanceID
    name: str  # last step of rel
    type: str  # bind type, select1/select, structure, repeat, binary...
    repeat: bool
    group: bool
    binary: bool
    sensitivity: str | None
    repeat_rel: str | None  # rel path of the nearest enclosing repeat (its own for a repeat)
    versions: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    choices: list[Choice] = field(default_factory=list)
    choice_file: str | None = None
    required: bool = False
    constraint: str | None = None
    relevant: str | None = None
    conditional: bool = False  # this node or a group around it has a ``relevant``
    calculate: str | None = None
    multiline: bool = False

    @property
    def select_multiple(self) -> bool:
        return self.type == "select"

    @property
    def leaf(self) -> bool:
        return not self.group

    @property
    def group_path(self) -> str:
        """Groups above the field, joined with ``/`` (empty at the top)."""
        return "/".join(self.rel.strip("/").split("/")[:-1])

    def label(self, lang: str | None) -> str:
        if lang and lang in self.labels:
            return self.labels[lang]
        return self.labels.get("", "") or next(iter(self.labels.values()), "")

    def choice_label(self, value: str, lang: str | None) -> str | None:
        for choice in self.choices:
            if choice.value == value:
                if lang and lang in choice.labels:
                    return choice.labels[lang]
                return choice.labels.get("") or next(iter(choice.labels.values()), None)
        return None


@dataclass
class FormSchema:
    """The merged fields of a form (depth-first document order) and what they know."""

    xml_form_id: str
    fields: list[Field]
    versions: list[str]

    def __post_init__(self) -> None:
        self.by_rel: dict[str, Field] = {f.rel: f for f in self.fields}

    @property
    def repeats(self) -> list[Field]:
        return [f for f in self.fields if f.repeat]

    def table_fields(self, repeat_rel: str | None) -> list[Field]:
        """The leaf fields that are columns of the root table (None) or of one repeat's table."""
        return [f for f in self.fields if f.leaf and _table_of(f) == repeat_rel]


def _table_of(f: Field) -> str | None:
    return f.repeat_rel if not f.repeat else None


def strip_path(path: str) -> str:
    """``/data/orx:meta/orx:instanceID`` → ``/meta/instanceID`` (Central's field path)."""
    steps = path.strip("/").split("/")[1:]
    return "/" + "/".join(step.split(":")[-1] for step in steps) if steps else ""


def lang_code(language: str) -> str:
    """``Tajik (tg)`` → ``tg``; ``en`` → ``en``; other names are kept as they are."""
    match = _LANG_CODE.search(language)
    return match.group(1).lower() if match else language.strip().lower()


# --------------------------------------------------------------------------------------------- XForm


@dataclass
class _XFormText:
    translations: dict[str, dict[str, str]]  # language code → text id → text
    default: str | None

    def lookup(self, text_id: str) -> dict[str, str]:
        found = {code: texts[text_id] for code, texts in self.translations.items() if text_id in texts}
        if self.default and self.default in found:
            found.setdefault("", found[self.default])
        elif found:
            found.setdefault("", next(iter(found.values())))
        return found


def _text_of(el: etree._Element) -> str:
    return " ".join("".join(el.itertext()).split())


def _itext(model: etree._Element) -> _XFormText:
    translations: dict[str, dict[str, str]] = {}
    default = None
    itext = model.find(f"{XF}itext")
    if itext is None:
        return _XFormText({}, None)
    for translation in itext.iterfind(f"{XF}translation"):
        code = lang_code(translation.get("lang") or "")
        if translation.get("default") is not None and default is None:
            default = code
        texts = translations.setdefault(code, {})
        for text in translation.iterfind(f"{XF}text"):
            values = text.findall(f"{XF}value")
            plain = [v for v in values if v.get("form") in (None, "long")] or values
            if plain and text.get("id"):
                texts[text.get("id")] = _text_of(plain[0])  # type: ignore[index]
    if default is None and translations:
        default = next(iter(translations))
    return _XFormText(translations, default)


def _label(el: etree._Element | None, itext: _XFormText) -> dict[str, str]:
    if el is None:
        return {}
    ref = el.get("ref") or ""
    match = _ITEXT_REF.search(ref)
    if match:
        return itext.lookup(match.group(1))
    text = _text_of(el)
    return {"": text} if text else {}


def _secondary_instances(model: etree._Element) -> dict[str, etree._Element]:
    return {i.get("id"): i for i in model.iterfind(f"{XF}instance") if i.get("id")}  # type: ignore[misc]


def _csv_choices(data: bytes, value_col: str, label_col: str) -> list[Choice]:
    text = data.decode("utf-8-sig", errors="replace")
    rows = csv.DictReader(io.StringIO(text))
    out = []
    for row in rows:
        value = (row.get(value_col) or "").strip()
        if not value:
            continue
        labels = {"": (row.get(label_col) or "").strip()}
        for column, cell in row.items():
            if not column or not cell:
                continue
            if column.startswith(f"{label_col}::"):  # label::Russian (ru), as in XLSForms
                labels[lang_code(column.split("::", 1)[1])] = cell.strip()
            elif _LANG_SUFFIX.fullmatch(column[len(label_col) :]) and column.startswith(label_col):
                labels[column[len(label_col) + 1 :].lower()] = cell.strip()  # label_ru
        out.append(Choice(value, labels))
    return out


def _choices(
    control: etree._Element,
    itext: _XFormText,
    instances: dict[str, etree._Element],
    media: MediaReader | None,
) -> tuple[list[Choice], str | None]:
    items = control.findall(f"{XF}item")
    if items:
        out = []
        for item in items:
            value_el = item.find(f"{XF}value")
            if value_el is not None and value_el.text:
                out.append(Choice(value_el.text.strip(), _label(item.find(f"{XF}label"), itext)))
        return out, None
    itemset = control.find(f"{XF}itemset")
    if itemset is None:
        return [], None
    match = _INSTANCE_REF.search(itemset.get("nodeset") or "")
    value_el = itemset.find(f"{XF}value")
    value_ref = (value_el.get("ref") if value_el is not None else None) or "name"
    label_el = itemset.find(f"{XF}label")
    label_ref = (label_el.get("ref") if label_el is not None else None) or "label"
    if not match or match.group(1) not in instances:
        return [], None
    instance = instances[match.group(1)]
    src = instance.get("src")
    if src:
        name = src.rsplit("/", 1)[-1]
        data = media(name) if media and name.lower().endswith(".csv") else None
        return (_csv_choices(data, value_ref, label_ref) if data else []), name
    out = []
    itext_label = label_ref.startswith("jr:itext(")  # jr:itext(itextId): the id is in the item
    for item in instance.iter(f"{XF}item"):
        value_el = item.find(f"{XF}{value_ref}")
        if value_el is None or not (value_el.text or "").strip():
            continue
        if itext_label:
            id_el = item.find(f"{XF}{label_ref[len('jr:itext(') : -1].strip()}")
            labels = itext.lookup((id_el.text or "").strip()) if id_el is not None else {}
        else:
            label_child = item.find(f"{XF}{label_ref}")
            labels = {"": _text_of(label_child)} if label_child is not None else {}
        out.append(Choice(value_el.text.strip(), labels))  # type: ignore[union-attr]
    return out, None


@dataclass
class _VersionDetails:
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    choices: dict[str, tuple[list[Choice], str | None]] = field(default_factory=dict)
    binds: dict[str, dict[str, str]] = field(default_factory=dict)
    multiline: set[str] = field(default_factory=set)


def _version_details(xml: str, media: MediaReader | None) -> _VersionDetails:
    """Labels, choices, binds and appearances of one XForm (stored, so already validated)."""
    try:
        root = safe_xml.parse(xml)
    except safe_xml.UnsafeXml:
        return _VersionDetails()
    model = root.find(f"{XHTML}head/{XF}model")
    body = root.find(f"{XHTML}body")
    details = _VersionDetails()
    if model is None:
        return details
    itext = _itext(model)
    instances = _secondary_instances(model)
    for bind in model.iterfind(f"{XF}bind"):
        nodeset = bind.get("nodeset")
        if nodeset:
            details.binds[nodeset] = {
                key: value
                for key in ("required", "constraint", "relevant", "calculate")
                if (value := bind.get(key))
            }
    if body is None:
        return details
    for control in body.iter():
        if not isinstance(control.tag, str):
            continue
        ref = control.get("ref") or control.get("nodeset")
        if not ref or not ref.startswith("/"):
            continue
        label = _label(control.find(f"{XF}label"), itext)
        if label and ref not in details.labels:
            details.labels[ref] = label
        local = etree.QName(control).localname
        if local in ("select", "select1", "rank", "odk:rank"):
            details.choices[ref] = _choices(control, itext, instances, media)
        if "multiline" in (control.get("appearance") or ""):
            details.multiline.add(ref)
    return details


# ------------------------------------------------------------------------------------------- merging


def _fields_of(version: FormVersion) -> list[Field]:
    out = []
    for d in version.fields or []:
        repeat_path = d.get("repeat_path")
        out.append(
            Field(
                path=d["path"],
                rel=strip_path(d["path"]),
                name=str(d["name"]).split(":")[-1],
                type=d.get("type") or "string",
                repeat=bool(d.get("repeat")),
                group=bool(d.get("group")),
                binary=bool(d.get("binary")) or strip_path(d["path"]) == "/meta/audit",
                sensitivity=d.get("sensitivity"),
                repeat_rel=strip_path(repeat_path) if repeat_path else None,
            )
        )
    return out


def merge_fields(older: list[Field], newer: list[Field]) -> list[Field]:
    """Central's merge: ``newer`` wins; fields only ``older`` has come back after their parent's subtree."""
    result = list(newer)
    known = {f.rel for f in newer}
    idx = 0
    while idx < len(older):
        current = older[idx]
        if current.rel in known:
            idx += 1
            continue
        prefix = current.rel[: current.rel.rfind("/")]
        end = idx + 1
        while end < len(older) and older[end].rel.startswith(current.rel + "/"):
            end += 1
        insert = len(result) - 1
        while insert >= 0 and not result[insert].rel.startswith(prefix):
            insert -= 1
        result[insert + 1 : insert + 1] = older[idx:end]
        known.update(f.rel for f in older[idx:end])
        idx = end
    return result


def _decorate(fields: Iterable[Field], details: _VersionDetails) -> None:
    conditional_groups: set[str] = set()
    for f in fields:
        bind = details.binds.get(f.path, {})
        if f.path in details.labels:
            f.labels = details.labels[f.path]
        if f.path in details.choices:
            f.choices, f.choice_file = details.choices[f.path]
        f.required = bind.get("required", "").strip() in _TRUE
        f.constraint = bind.get("constraint")
        f.relevant = bind.get("relevant")
        f.calculate = bind.get("calculate")
        f.multiline = f.path in details.multiline
        parents = {p for p in conditional_groups if f.path.startswith(p + "/")}
        f.conditional = bool(f.relevant) or bool(parents)
        if f.group and f.relevant:
            conditional_groups.add(f.path)


def build_schema(
    xml_form_id: str,
    versions: list[FormVersion],
    media: Callable[[FormVersion], MediaReader | None] | None = None,
) -> FormSchema:
    """The merged schema of ``versions`` (oldest first); the last one's labels win."""
    merged: list[Field] = []
    names: list[str] = []
    for version in versions:
        fields = _fields_of(version)
        _decorate(fields, _version_details(version.xml, media(version) if media else None))
        for f in fields:
            f.versions = [version.version]
        previous = {f.rel: f for f in merged}
        for f in fields:
            if f.rel in previous:
                f.versions = [*previous[f.rel].versions, version.version]
        merged = merge_fields(merged, fields) if merged else fields
        names.append(version.version)
    return FormSchema(xml_form_id, merged, names)


def load_schema(
    session: Session,
    form: Form,
    *,
    merged: bool = True,
    media: Callable[[FormVersion], MediaReader | None] | None = None,
) -> FormSchema:
    """The form's schema: all published versions merged, or only the current version's fields."""
    if merged:
        versions = list(
            session.scalars(
                select(FormVersion)
                .where(FormVersion.form_id == form.id, FormVersion.published_at.is_not(None))
                .order_by(FormVersion.id)
            )
        )
    else:
        versions = [form.current_version] if form.current_version is not None else []
    return build_schema(form.xml_form_id, versions, media)


def blob_media_reader(session: Session, blobs: Any) -> Callable[[FormVersion], MediaReader]:
    """A reader of a version's media CSVs from the blob store (for select_one_from_file choices)."""

    def for_version(version: FormVersion) -> MediaReader:
        def read(name: str) -> bytes | None:
            row = session.scalar(
                select(FormMedia).where(FormMedia.form_version_id == version.id, FormMedia.name == name)
            )
            if row is None or row.blob_sha256 is None:
                return None
            try:
                return blobs.read_bytes(row.blob_sha256)  # type: ignore[no-any-return]
            except Exception:  # a missing blob only costs the labels; doctor reports it
                return None

        return read

    return for_version
