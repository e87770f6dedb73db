"""Wire formats shared by central and ``sarhad-sync``: the canonical holding line and digest, and
gzip-compressed JSON lines with a limit on the decompressed size (no decompression bombs)."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# Media type of the batch and inventory bodies: gzip of one JSON object per line.
JSON_LINES_GZIP = "application/x-ndjson"


class BodyTooLarge(Exception):
    pass


class BodyUnreadable(Exception):
    pass


def holding_line(
    project_id: int, xml_form_id: str, instance_id: str, sha256: str, attachments: Mapping[str, str]
) -> str:
    """One submission version as held: JSON, so that no name can make two lines look alike."""
    pairs = sorted(attachments.items())
    return json.dumps([project_id, xml_form_id, instance_id, sha256, pairs], separators=(",", ":"))


def holdings_digest(lines: Iterable[str]) -> str:
    """sha256 over the sorted, distinct holding lines, each ending in a newline."""
    digest = hashlib.sha256()
    for line in sorted(set(lines)):
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_lines(objects: Iterable[Mapping[str, Any]], level: int = 9) -> bytes:
    raw = b"".join(json.dumps(o, separators=(",", ":")).encode("utf-8") + b"\n" for o in objects)
    return gzip.compress(raw, compresslevel=level, mtime=0)


def decode_lines(body: bytes, limit: int) -> Iterator[dict[str, Any]]:
    """The JSON objects of a gzip JSON-lines body; refuses more than ``limit`` decompressed bytes."""
    inflater = zlib.decompressobj(wbits=31)
    out = bytearray()
    try:
        pending = body
        while pending:
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise BodyTooLarge(limit)
            pending = inflater.unconsumed_tail
        out += inflater.flush()
    except zlib.error:
        raise BodyUnreadable("the body is not gzip-compressed") from None
    if len(out) > limit:
        raise BodyTooLarge(limit)
    for number, line in enumerate(bytes(out).split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise BodyUnreadable(f"line {number} is not JSON") from None
        if not isinstance(value, dict):
            raise BodyUnreadable(f"line {number} is not a JSON object")
        yield value
