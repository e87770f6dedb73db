"""Every OpenRosa reply body and header, in one module.

Collect checks that form lists and manifests come as ``text/xml`` with ``X-OpenRosa-Version``; it shows
the first ``<message>`` of an ``OpenRosaResponse``; it drops a whole list when one entry lacks a field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape

from flask import Response

from server import config

XFORMS_LIST_NS = "http://openrosa.org/xforms/xformsList"
MANIFEST_NS = "http://openrosa.org/xforms/xformsManifest"
RESPONSE_NS = "http://openrosa.org/http/response"
XML_TYPE = "text/xml; charset=utf-8"


def headers() -> dict[str, str]:
    # No Date header here: the HTTP server adds it (gunicorn drops one set by the application, werkzeug's
    # server adds one when it is missing), and formatting it cost a measurable share of a HEAD.
    return {
        "X-OpenRosa-Version": "1.0",
        "X-OpenRosa-Accept-Content-Length": str(config.settings().max_request_bytes),
    }


def xml_response(body: str, status: int = 200) -> Response:
    return Response(
        body.encode("utf-8"), status=status, mimetype=None, content_type=XML_TYPE, headers=headers()
    )


def message(text: str, status: int, nature: str = "") -> Response:
    nature_attr = f' nature="{escape(nature)}"' if nature else ""
    body = (
        f'<OpenRosaResponse xmlns="{RESPONSE_NS}">'
        f"<message{nature_attr}>{escape(text)}</message></OpenRosaResponse>"
    )
    return xml_response(body, status)


def submission_head() -> Response:
    """HEAD /submission: Collect requires exactly 204 to call this an OpenRosa server."""
    return Response(status=204, headers=headers())


@dataclass(frozen=True)
class FormListEntry:
    form_id: str
    name: str
    version: str
    md5: str
    download_url: str
    manifest_url: str | None


def form_list(entries: Iterable[FormListEntry]) -> Response:
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<xforms xmlns="{XFORMS_LIST_NS}">']
    for e in entries:
        parts.append(
            "<xform>"
            f"<formID>{escape(e.form_id)}</formID>"
            f"<name>{escape(e.name)}</name>"
            f"<version>{escape(e.version)}</version>"
            f"<hash>md5:{e.md5}</hash>"
            f"<downloadUrl>{escape(e.download_url)}</downloadUrl>"
            + (f"<manifestUrl>{escape(e.manifest_url)}</manifestUrl>" if e.manifest_url else "")
            + "</xform>"
        )
    parts.append("</xforms>")
    return xml_response("".join(parts))


@dataclass(frozen=True)
class ManifestEntry:
    filename: str
    md5: str
    download_url: str


def manifest(entries: Iterable[ManifestEntry]) -> Response:
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<manifest xmlns="{MANIFEST_NS}">']
    for e in entries:
        parts.append(
            "<mediaFile>"
            f"<filename>{escape(e.filename)}</filename>"
            f"<hash>md5:{e.md5}</hash>"
            f"<downloadUrl>{escape(e.download_url)}</downloadUrl>"
            "</mediaFile>"
        )
    parts.append("</manifest>")
    return xml_response("".join(parts))
