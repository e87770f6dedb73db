"""The tables of a form as OData sees them, and its ``$metadata`` (EDMX) document, in Central's shape.

- ``Submissions`` is the root table; every repeat is a table of its own, named by its path
  (``Submissions.group.repeat``); groups are complex types; a repeat inside a row is a navigation property.
- Names are made into OData identifiers as Central does (:func:`odata_name`).
- A field that is pseudonymised for the requester is typed ``Edm.String`` in ``$metadata`` (a pseudonym
  is text, whatever the question's type), so that Power BI and Excel read what they are sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from server.datasets.redact import Access, Treatment
from server.datasets.schema import Field, FormSchema

FQDN_ROOT = "org.opendatakit.user"
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


def odata_name(name: str) -> str:
    """A name made into an OData identifier, as Central does: a leading character that cannot start
    one gets ``_`` in front, and characters other than letters, digits and ``_`` become ``_``."""
    name = re.sub(r"^([^A-Za-z_])", r"_\1", name)
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


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
    group_steps: tuple[str, ...] = field(init=False)  # the groups between its table and it (OData names)

    def __post_init__(self) -> None:
        self.relpath = self.opath[len(self.owner) + 1 :] if self.owner else self.opath
        self.name = self.opath.rsplit("/", 1)[-1]
        self.group_steps = tuple(self.relpath.split("/")[:-1])
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
    by_rel: dict[str, Node]  # by Central path, as :mod:`server.datasets.reader` keys values
    fields: dict[str, Field]  # the fields the tree holds, by Central path: what the reader walks

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
        fields = {rel: node.field for rel, node in by_rel.items() if node.field is not None}
        return cls(root, tables, by_opath, by_rel, fields)


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
    '<Property Name="deletedAt" Type="Edm.DateTimeOffset"/>'
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
