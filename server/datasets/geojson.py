"""GeoJSON export: a FeatureCollection with one Point per answered geopoint question.

Each feature's properties: ``__id`` (the submission), ``KEY`` (its row: the submission or a repeat
instance), ``table``, ``field`` (the geopoint's column name), ``accuracy``, and the other answers of the
same row (typed, as in JSONL). Coordinates are ``[longitude, latitude(, altitude)]`` as RFC 7946 wants.
Personal locations follow the role's rule (:mod:`server.datasets.redact`): for analysts they are
rounded to 0.1 degree without altitude or accuracy. The collection carries the export's ``codebook`` as
a foreign member (allowed by RFC 7946) so that the file explains itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from server.datasets.clean import Geopoint, parse_geopoint
from server.datasets.codebook import CODEBOOK_HEADER, codebook_lines
from server.datasets.jsonl import json_default, row_object
from server.datasets.tables import Dataset, Table, basename


def has_geopoints(tables: list[Table]) -> bool:
    return any(c.field is not None and c.field.type == "geopoint" for t in tables for c in t.columns)


def stream_geojson(dataset: Dataset, tables: list[Table]) -> Iterator[bytes]:
    by_path = {t.path: t for t in tables}
    geo = {
        t.path: [
            c.field for c in t.columns if c.field is not None and c.field.type == "geopoint" and c.part == 0
        ]
        for t in tables
    }
    yield b'{"type":"FeatureCollection","features":['
    first = True
    buffer: list[str] = []
    for rows in dataset.submissions():
        for row in rows:
            table = by_path.get(row.table)
            if table is None:
                continue
            props_base: dict[str, Any] | None = None
            for f in geo.get(table.path, []):
                assert f is not None
                value = row.values.get(f.rel)
                point = parse_geopoint(value) if value else None
                if point is None:
                    continue
                if props_base is None:
                    props_base = {
                        k: v
                        for k, v in row_object(dataset, table, row).items()
                        if not isinstance(v, Geopoint)
                    }
                coordinates: list[float] = [point.longitude, point.latitude]
                if point.altitude is not None:
                    coordinates.append(point.altitude)
                feature = {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": coordinates},
                    "properties": {
                        "__id": row.record.instance_id,
                        "KEY": row.key,
                        "table": table.name,
                        "field": basename(f, table, dataset.opts),
                        "accuracy": point.accuracy,
                        **props_base,
                    },
                }
                buffer.append(
                    ("" if first else ",") + json.dumps(feature, ensure_ascii=False, default=json_default)
                )
                first = False
        if len(buffer) >= 200:
            yield "\n".join(buffer).encode("utf-8")
            buffer.clear()
    if buffer:
        yield "\n".join(buffer).encode("utf-8")
    lines = [
        dict(zip(CODEBOOK_HEADER, line, strict=True)) for line in codebook_lines(tables, dataset.opts.access)
    ]
    yield b'],"codebook":' + json.dumps(lines, ensure_ascii=False).encode("utf-8") + b"}\n"
