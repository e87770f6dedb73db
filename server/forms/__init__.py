"""Forms: XLSForm → XForm conversion (pyxform, in a child process), XForm parsing, versions and media.

- :mod:`server.forms.xform`: ``parse_xform(xml) -> XFormInfo`` (id, version, title, key, media, fields).
- :mod:`server.forms.convert`: ``convert_xlsform(...)`` in a time-limited child process.
- :mod:`server.forms.publish`: the version rules, drafts, media, form states; used by the CLI and /v1.
"""

from server.forms.publish import (
    FormSource,
    Outcome,
    find_draft,
    find_form,
    publish,
    published_version,
    published_versions,
    source_from_xform,
    source_from_xlsform,
)
from server.forms.xform import FieldInfo, MediaRef, XFormInfo, parse_xform

__all__ = [
    "FieldInfo",
    "FormSource",
    "MediaRef",
    "Outcome",
    "XFormInfo",
    "find_draft",
    "find_form",
    "parse_xform",
    "publish",
    "published_version",
    "published_versions",
    "source_from_xform",
    "source_from_xlsform",
]
