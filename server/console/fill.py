"""Preview and fill a form in the browser with ODK Web Forms (vendored under ``static/vendor/``).

- ``.../preview`` shows the published version (any role) or, with ``?draft=1``, the draft (those who
  publish); nothing is sent from a preview. ``.../fill`` is the published version for those who may
  submit (admins and coordinators, as ``POST /v1/.../submissions``): a focus-group write-up typed on the
  hub laptop after the discussion.
- The XForm and its media (CSV lists, images) come from ``.../xform`` and ``.../media/{name}``, read
  with the API's own functions and role rules (``server.api.forms``).
- A filled form is posted as Web Forms makes it (multipart: ``xml_submission_file`` and its files) with
  the page's CSRF token, and stored by the one ingest path as the signed-in user (source ``api``, detail
  ``console``), exactly as an API submission. The reply is JSON for the page's script.
- Only this page loads the ~1.3 MB (gzipped) of Web Forms and Vue; every other page stays light. Its
  Content-Security-Policy differs from the other pages' in three points Web Forms needs: the inline
  import map (allowed by its hash), WebAssembly (its XPath parser; ``'wasm-unsafe-eval'``) and inline
  styles (PrimeVue writes its theme into <style> elements).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
from pathlib import Path
from typing import BinaryIO

from flask import Response, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.exceptions import NotFound

from server import config, db, errors
from server.api.forms import WRITE_ROLES, _readable_form, attachment_file, draft_of
from server.api.submissions import form_access
from server.console import console
from server.console.pages import role_in
from server.console.session import forget_user, require_signed_in
from server.models import Form, FormState, FormVersion, Source

VENDOR = Path(__file__).parent / "static" / "vendor"
WEB_FORMS = "vendor/web-forms-0.22.0/index.js"
VUE = "vendor/vue-3.5.29/vue.runtime.esm-browser.prod.js"
VIA = "console"


def _import_map() -> str:
    return json.dumps(
        {
            "imports": {
                "vue": url_for("console.vendor_file", name=VUE.removeprefix("vendor/")),
                "@getodk/web-forms": url_for("console.vendor_file", name=WEB_FORMS.removeprefix("vendor/")),
            }
        },
        separators=(",", ":"),
    )


def _policy(import_map: str) -> str:
    digest = base64.b64encode(hashlib.sha256(import_map.encode("utf-8")).digest()).decode()
    return (
        "default-src 'self'; "
        f"script-src 'self' 'sha256-{digest}' 'wasm-unsafe-eval'; "
        "style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data: blob:; "
        "media-src 'self' blob:; connect-src 'self' data: blob:; worker-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def _draft_wanted() -> bool:
    return request.args.get("draft", "") in {"1", "true"}


def _version(project_id: int, xml_form_id: str) -> tuple[Form, FormVersion, bool]:
    """The version to show, with the API's roles: the draft for those who publish, else the current."""
    require_signed_in()
    if _draft_wanted():
        form = _readable_form(project_id, xml_form_id, *WRITE_ROLES)
        return form, draft_of(form), True
    form = _readable_form(project_id, xml_form_id)
    if form.current_version is None:
        raise errors.not_found(_("This form is not published yet: preview its draft."))
    return form, form.current_version, False


def _page(project_id: int, xml_form_id: str, *, fill: bool) -> Response:
    form, version, draft = _version(project_id, xml_form_id)
    suffix = "?draft=1" if draft else ""
    import_map = _import_map()
    html = render_template(
        "fill.html",
        project=form.project,
        form=form,
        version=version,
        draft=draft,
        fill=fill,
        import_map=import_map,
        form_url=url_for("console.form_xml", project_id=project_id, xml_form_id=xml_form_id) + suffix,
        media_url=url_for("console.form_media", project_id=project_id, xml_form_id=xml_form_id, name="-")[
            :-1
        ],
        media_query=suffix,
        submit_url=url_for("console.fill_submit", project_id=project_id, xml_form_id=xml_form_id)
        if fill
        else "",
        missing=[m.name for m in version.media if m.blob_sha256 is None],
        may_fill=role_in(require_signed_in(), project_id) in WRITE_ROLES and form.current_version is not None,
        closed=form.state == FormState.CLOSED,
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _policy(import_map)
    return response


@console.get("/projects/<int:project_id>/forms/<xml_form_id>/preview")
def form_preview(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    return _page(project_id, xml_form_id, fill=False)


@console.get("/projects/<int:project_id>/forms/<xml_form_id>/fill")
def form_fill(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    require_signed_in()
    form_access(project_id, xml_form_id, *WRITE_ROLES)  # 403 for analysts, as the API's submissions
    if _draft_wanted():
        raise errors.bad_request(_("A draft cannot take submissions: publish it first."))
    return _page(project_id, xml_form_id, fill=True)


@console.get("/projects/<int:project_id>/forms/<xml_form_id>/xform")
def form_xml(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    _form, version, _draft = _version(project_id, xml_form_id)
    return Response(version.xml.encode("utf-8"), content_type="application/xml; charset=utf-8")


@console.get("/projects/<int:project_id>/forms/<xml_form_id>/media/<name>")
def form_media(project_id: int, xml_form_id: str, name: str) -> ResponseReturnValue:
    _form, version, _draft = _version(project_id, xml_form_id)
    return attachment_file(version, name)


@console.post("/projects/<int:project_id>/forms/<xml_form_id>/fill")
def fill_submit(project_id: int, xml_form_id: str) -> ResponseReturnValue:
    """Store what the page's Web Forms sent; JSON in both directions (the page's script reads it)."""
    require_signed_in()
    try:
        upload = request.files.get("xml_submission_file")
        if upload is None:
            raise errors.bad_request(_("The filled form did not arrive (no xml_submission_file)."))
        xml = upload.read()
        files = [
            (f.filename or key, f.stream) for key, f in request.files.items(multi=True) if f is not upload
        ]
        db.session().rollback()
        forget_user()
        return _store(project_id, xml_form_id, xml, files)
    except errors.Problem as problem:
        if problem.status >= 500:
            raise
        return errors.render(problem)


@db.write_request
def _store(
    project_id: int, xml_form_id: str, xml: bytes, files: list[tuple[str, BinaryIO]]
) -> ResponseReturnValue:
    from server.ingest import ingest  # as server.api.submissions does: ingest imports much of the app
    from server.ingest.parse import parse_submission

    require_signed_in()  # read again in this write transaction
    fa = form_access(project_id, xml_form_id, *WRITE_ROLES)
    parsed = parse_submission(xml, config.settings().max_xml_bytes)
    if parsed.form_id != fa.form.xml_form_id:
        raise errors.bad_request(
            _("This is a submission to the form %(other)s, not to this one.", other=parsed.form_id)
        )
    result = ingest(
        db.writer(),
        project=fa.project,
        xml_bytes=xml,
        parsed=parsed,
        attachments=files,
        source=Source.API,
        source_detail=VIA,
        user=fa.user,
        user_agent=request.headers.get("User-Agent"),
    )
    if not result.accepted:
        return errors.render(result.problem())  # the payload is kept as a conflict (committed)
    reply = jsonify(
        {
            "instanceId": parsed.instance_id,
            "message": _("Sent: the submission is stored."),
            "url": url_for(
                "console.submission_page",
                project_id=project_id,
                xml_form_id=xml_form_id,
                instance_id=parsed.instance_id,
            ),
        }
    )
    reply.status_code = 201
    return reply


# ---- the vendored files, gzipped once ------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _gzipped(path: Path, _mtime: float) -> bytes:
    return gzip.compress(path.read_bytes(), compresslevel=9)


@console.get("/assets/vendor/<path:name>")
def vendor_file(name: str) -> ResponseReturnValue:
    """A vendored file, gzipped (compressed once per process: 3.6 MB of JavaScript goes as 1.3 MB) and
    cached by browsers for a year (its path names the version, so a new version is a new address)."""
    path = (VENDOR / name).resolve()
    if VENDOR.resolve() not in path.parents or not path.is_file() or path.suffix not in {".js", ".md"}:
        raise NotFound()
    mimetype = "text/javascript" if path.suffix == ".js" else "text/plain"
    if request.accept_encodings.quality("gzip"):
        response = Response(_gzipped(path, path.stat().st_mtime), mimetype=mimetype)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(path.read_bytes(), mimetype=mimetype)
    response.vary.add("Accept-Encoding")
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
