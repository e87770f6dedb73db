"""Answers go gzipped to clients that accept it: the API's JSON (requests, pyodk and sync_client decode
it) and the console's pages (browsers do).

Hubs sync over slow, metered links, and an inventory answer or a submission list of thousands of rows is
mostly repeated keys: it shrinks several times; so does a page of HTML over a 2G link. Streamed answers
(exports, OData pages) and small ones are left as they are.
"""

from __future__ import annotations

import gzip
from collections.abc import Container

from flask import Response, request

from server.api import api

MIN_BYTES = 1024
LEVEL = 6  # most of level 9's gain at a fraction of its CPU
JSON_TYPES = frozenset({"application/json"})


def gzip_if_accepted(response: Response, mimetypes: Container[str]) -> Response:
    """``response`` gzipped when its type is one of ``mimetypes``, it is whole (not streamed), at least
    ``MIN_BYTES`` long and the client sent ``Accept-Encoding: gzip``."""
    if (
        response.mimetype not in mimetypes
        or response.direct_passthrough
        or response.is_streamed
        or "Content-Encoding" in response.headers
        or not request.accept_encodings.quality("gzip")
    ):
        return response
    body = response.get_data()
    if len(body) < MIN_BYTES:
        return response
    response.set_data(gzip.compress(body, compresslevel=LEVEL))
    response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    return response


@api.after_request
def gzip_json(response: Response) -> Response:
    return gzip_if_accepted(response, JSON_TYPES)
