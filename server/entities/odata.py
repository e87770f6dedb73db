"""Entities as OData rows and EDMX, in Central's shape (``.../datasets/{name}.svc``), no HTTP.

A row is ``{"__id", "label", "__system": {...}, <property>: "..."}``: properties by their OData
names, a property an entity never had as ``""``; ``__system`` holds ``createdAt``, ``creatorId`` (a
string), ``creatorName``, ``updates`` (version - 1), ``updatedAt``, ``deletedAt``, ``version`` and
``conflict``.

``$filter`` (the parser of :mod:`server.datasets.odata_filter`) may name ``__id``, ``label``, any
property and ``__system/createdAt``, ``updatedAt``, ``deletedAt``, ``creatorId``, ``conflict``,
``version``, ``updates``. ``$select`` takes ``__id``, ``label``, ``__system``, ``__system/<field>`` and
properties; anything else is 400.23 as in Central.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from server import errors
from server.api.schemas import iso
from server.datasets import odata_filter as of
from server.datasets.odata_schema import odata_name

SYSTEM_FIELDS = (
    "createdAt",
    "creatorId",
    "creatorName",
    "updates",
    "updatedAt",
    "deletedAt",
    "version",
    "conflict",
)
FQDN_ROOT = "org.opendatakit.user"


@dataclass(frozen=True)
class EntityRow:
    """What one row needs, read out of the database while the session is open."""

    uuid: str
    label: str
    data: dict[str, Any]
    version: int
    conflict: str | None
    created_at: dt.datetime
    creator_id: int | None
    creator_name: str | None
    updated_at: dt.datetime | None
    deleted_at: dt.datetime | None

    def system(self) -> dict[str, Any]:
        return {
            "createdAt": iso(self.created_at),
            "creatorId": None if self.creator_id is None else str(self.creator_id),
            "creatorName": self.creator_name,
            "updates": self.version - 1,
            "updatedAt": iso(self.updated_at),
            "deletedAt": iso(self.deleted_at),
            "version": self.version,
            "conflict": self.conflict,
        }


property_not_found = errors.property_not_found


class Selection:
    """Which parts of a row ``$select`` asks for (everything without it, or with ``*``)."""

    def __init__(self, raw: str | None, properties: Sequence[str]) -> None:
        self.properties = list(properties)
        self.fields: set[str] | None = None
        if raw is not None and raw.strip() not in ("", "*"):
            wanted = {p.strip() for p in raw.split(",")}
            known = {"__id", "label", "__system", *(f"__system/{f}" for f in SYSTEM_FIELDS), *properties}
            known |= {odata_name(p) for p in properties}
            for name in wanted:
                if name not in known:
                    raise property_not_found(name)
            self.fields = wanted

    def _has(self, name: str) -> bool:
        return self.fields is None or name in self.fields

    def shape(self, row: EntityRow) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._has("__id"):
            out["__id"] = row.uuid
        if self._has("label"):
            out["label"] = row.label
        system = row.system()
        if self._has("__system"):
            out["__system"] = system
        else:
            assert self.fields is not None
            some = {f: system[f] for f in SYSTEM_FIELDS if f"__system/{f}" in self.fields}
            if some:
                out["__system"] = some
        for name in self.properties:
            column = odata_name(name)
            if self._has(name) or self._has(column):
                out[column] = row.data.get(name, "")
        return out


class RowFilter:
    """``$filter`` over entity rows, evaluated in Python on each row."""

    def __init__(self, raw: str | None, properties: Sequence[str]) -> None:
        self.node = None if raw is None else of.parse(raw)
        self.by_name = {**{p: p for p in properties}, **{odata_name(p): p for p in properties}}
        if self.node is not None:
            for member in of.members(self.node):
                if member.root or not self._known(member.path):
                    raise of.unknown_property(member.path)

    def _known(self, path: str) -> bool:
        if path in ("__id", "label") or path in self.by_name:
            return True
        return path.startswith("__system/") and path.removeprefix("__system/") in SYSTEM_FIELDS

    @property
    def names_deleted(self) -> bool:
        """A filter on ``__system/deletedAt`` sees deleted entities too (Central's way to list them)."""
        return self.node is not None and any(m.path == "__system/deletedAt" for m in of.members(self.node))

    def wanted(self, row: EntityRow) -> bool:
        if self.node is None:
            return True

        def resolve(member: of.Member) -> Any:
            path = member.path
            if path == "__id":
                return row.uuid
            if path == "label":
                return row.label
            if path in self.by_name:
                return row.data.get(self.by_name[path], "")
            system = {
                "createdAt": row.created_at,
                "updatedAt": row.updated_at,
                "deletedAt": row.deleted_at,
                "creatorId": row.creator_id,
                "creatorName": row.creator_name,
                "conflict": row.conflict,
                "version": row.version,
                "updates": row.version - 1,
            }
            return system[path.removeprefix("__system/")]

        return of.matches(self.node, resolve)


def edmx(list_name: str, properties: Sequence[str]) -> str:
    """Central's ``$metadata`` for an entity list: one ``Entities`` type, every property a string."""
    base = f"{FQDN_ROOT}.{odata_name(list_name)}"
    system = "".join(
        f'<Property Name="{name}" Type="{kind}"/>'
        for name, kind in (
            ("createdAt", "Edm.DateTimeOffset"),
            ("creatorId", "Edm.String"),
            ("creatorName", "Edm.String"),
            ("updates", "Edm.Int64"),
            ("updatedAt", "Edm.DateTimeOffset"),
            ("deletedAt", "Edm.DateTimeOffset"),
            ("version", "Edm.Int64"),
            ("conflict", "Edm.String"),
        )
    )
    props = "".join(f'<Property Name={quoteattr(odata_name(p))} Type="Edm.String"/>' for p in properties)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">'
        "<edmx:DataServices>"
        '<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="org.opendatakit.entity">'
        f'<ComplexType Name="metadata">{system}</ComplexType>'
        "</Schema>"
        f'<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace={quoteattr(base)}>'
        '<EntityType Name="Entities"><Key><PropertyRef Name="__id"/></Key>'
        '<Property Name="__id" Type="Edm.String"/>'
        '<Property Name="__system" Type="org.opendatakit.entity.metadata"/>'
        f'<Property Name="label" Type="Edm.String"/>{props}</EntityType>'
        f"<EntityContainer Name={quoteattr(list_name)}>"
        f'<EntitySet Name="Entities" EntityType="{escape(base)}.Entities">'
        '<Annotation Term="Org.OData.Capabilities.V1.ConformanceLevel" '
        'EnumMember="Org.OData.Capabilities.V1.ConformanceLevelType/Minimal"/>'
        '<Annotation Term="Org.OData.Capabilities.V1.BatchSupported" Bool="false"/>'
        '<Annotation Term="Org.OData.Capabilities.V1.CountRestrictions">'
        '<Record><PropertyValue Property="Countable" Bool="true"/></Record></Annotation>'
        "</EntitySet></EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"
    )
