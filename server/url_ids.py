"""Ids in addresses: form ids and instance ids may hold any character Central allows, slashes included.

Central (and pyodk, and Collect following a form list) put an id in one path segment, percent-encoded:
the form id ``'=+/*-451%/%`` travels as ``'%3D%2B%2F*-451%25%2F%25``. WSGI servers (gunicorn, Werkzeug's)
decode the whole path before the application sees it, so ``%2F`` would become a real ``/`` and the route
would no longer match. Two pieces keep the segment whole:

- :class:`KeepEncodedSlashes`, a WSGI middleware, rebuilds ``PATH_INFO`` from the raw request line
  (``RAW_URI``, which gunicorn, Werkzeug's server and its test client all set) decoding every escape except
  ``%2F`` and ``%25``, which stay as they are. It checks that its result decodes to exactly the path the
  server decoded, and otherwise leaves the request alone.
- :class:`SegmentConverter` (Flask's default ``<name>`` converter) and :class:`SlashPathConverter`
  (``<path:...>``) turn those two escapes back into ``/`` and ``%`` in the value a view receives.

Whatever their characters, ids never hold control characters or ``.``/``..`` path segments: such an id
could be mistaken for a path by a tool or a file system down the line. :func:`id_problem` says why an id
is refused; addresses naming one get 400 (:func:`init_app`), and forms or submissions declaring one are
refused at upload with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

from flask import Flask, request
from werkzeug.routing import PathConverter, UnicodeConverter

from server import errors

_KEPT = re.compile(r"%(?:2[fF]|25)")
_KEPT_BYTES = re.compile(rb"%(?:2[fF]|25)")
# Werkzeug's safe characters for a segment, without "/" (a slash in an id is sent as %2F).
_SEGMENT_SAFE = "!$&'()*+,:;=@"


def _unescape_kept(value: str) -> str:
    return _KEPT.sub(lambda m: "/" if m.group(0).lower() == "%2f" else "%", value)


def decoded_path() -> str:
    """The request's path with every escape decoded (as a WSGI server would give it)."""
    return _unescape_kept(request.path)


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id (form id, instance id, name in an address), or None when it can."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "it contains control characters"
    if any(segment in (".", "..") for segment in value.split("/")):
        return "it contains a '.' or '..' path segment"
    return None


class SegmentConverter(UnicodeConverter):
    """One path segment; ``%2F`` and ``%25`` kept by :class:`KeepEncodedSlashes` become ``/`` and ``%``."""

    def to_python(self, value: str) -> str:
        return _unescape_kept(value)

    def to_url(self, value: Any) -> str:
        return quote(str(value), safe=_SEGMENT_SAFE)


class SlashPathConverter(PathConverter):
    """Several segments, as Werkzeug's ``path``, with the kept escapes decoded as the server would have."""

    def to_python(self, value: str) -> str:
        return _unescape_kept(value)


def _keep_escapes(raw_path: bytes) -> str:
    """The raw path with every escape decoded except %2F and %25 (upper-cased), as a WSGI string."""
    out = bytearray()
    last = 0
    for match in _KEPT_BYTES.finditer(raw_path):
        out += unquote_to_bytes(raw_path[last : match.start()])
        out += match.group(0).upper()
        last = match.end()
    out += unquote_to_bytes(raw_path[last:])
    return out.decode("latin-1")


def _raw_path(environ: dict[str, Any]) -> str | None:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        return None
    if not raw.startswith("/"):  # an absolute URI in the request line
        raw = urlsplit(raw).path or "/"
    return raw.split("?", 1)[0].split("#", 1)[0]


class KeepEncodedSlashes:
    """WSGI middleware: ``PATH_INFO`` keeps ``%2F`` and ``%25`` encoded (see the module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raw = _raw_path(environ)
        if raw is not None and _KEPT.search(raw):
            # A WSGI string holds the request's bytes as latin-1 (a client may send UTF-8 unencoded).
            try:
                raw_bytes = raw.encode("latin-1")
            except UnicodeEncodeError:
                return self.app(environ, start_response)
            script = environ.get("SCRIPT_NAME", "")
            kept = _keep_escapes(raw_bytes)
            decoded = unquote_to_bytes(raw_bytes).decode("latin-1")
            # Only when the server decoded the same path: a proxy or server that rewrote it is left alone.
            if decoded == script + environ.get("PATH_INFO", "") and kept.startswith(script):
                environ["PATH_INFO"] = kept[len(script) :]
        return self.app(environ, start_response)


def init_app(app: Flask) -> None:
    """Install the middleware and the converters (before any route is registered), and refuse ids that
    hold control characters or dot segments with a 400 in the client's format."""
    app.wsgi_app = KeepEncodedSlashes(app.wsgi_app)  # type: ignore[method-assign]
    app.url_map.converters["default"] = SegmentConverter
    app.url_map.converters["string"] = SegmentConverter
    app.url_map.converters["path"] = SlashPathConverter

    @app.before_request
    def _refuse_unsafe_ids() -> None:
        for name, value in (request.view_args or {}).items():
            if isinstance(value, str) and (why := id_problem(value)):
                raise errors.bad_request(f"The {name} in the address is not accepted: {why}.", field=name)
