"""JSON answers of the API go gzipped to clients that accept it (requests, pyodk and sync_client do).

Hubs sync over slow, metered links, and an inventory answer or a submission list of thousands of rows is
mostly repeated keys: it shrinks several times. Streamed answers (exports, OData pages) and small ones
are left as they are.
"""

from __future__ import annotations

import gzip

from flask import Response, request

from server.api import api

MIN_BYTES = 1024
LEVEL = 6  # most of level 9's gain at a fraction of its CPU


@api.after_request
def gzip_json(response: Response) -> Response:
    if (
        response.mimetype != "application/json"
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
