"""Security headers on every answer, set in one ``after_request`` hook.

- ``X-Content-Type-Options: nosniff``: a browser never guesses a type (an uploaded "photo" is not run
  as HTML or script).
- ``Referrer-Policy: no-referrer``: addresses (which may hold a device key) never leak to other sites.
- ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``: no page of another site may frame ours.
- ``Cache-Control: no-store`` on every answer outside the OpenRosa routes: JSON, exports, OData,
  attachments and sign-in answers hold submission data, tokens or personal data, and no browser or
  proxy may keep a copy. The OpenRosa routes (form lists, manifests, form and media downloads, Collect's
  submission replies) keep their own caching headers: Collect relies on ETags there, and they carry no
  submission data back. Versioned public files that hold no data (the console's vendored Web Forms
  scripts, whose address names their version) mark themselves ``immutable`` and keep their caching: a
  1.3 MB download over a 2G link should happen once, not on every visit.
"""

from __future__ import annotations

from flask import Flask, Response, request

FRAME_ANCESTORS = "frame-ancestors 'none'"
ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
OWN_CACHING_BLUEPRINTS = frozenset({"openrosa"})


def add_security_headers(response: Response) -> Response:
    for name, value in ALWAYS.items():
        response.headers[name] = value
    policy = response.headers.get("Content-Security-Policy")
    if not policy:
        response.headers["Content-Security-Policy"] = FRAME_ANCESTORS
    elif "frame-ancestors" not in policy:  # a page's own policy keeps what it says, framing refused
        response.headers["Content-Security-Policy"] = f"{policy.rstrip('; ')}; {FRAME_ANCESTORS}"
    own = "immutable" in response.headers.get("Cache-Control", "")
    if request.blueprint not in OWN_CACHING_BLUEPRINTS and not own:
        response.headers["Cache-Control"] = "no-store"
        response.headers.pop("Expires", None)
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
