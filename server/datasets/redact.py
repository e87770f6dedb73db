"""Who may see what: personal and sensitive fields treated by the requester's role.

Fields are tagged in the XLSForm (``bind::sarhad:sensitivity`` = ``personal`` or ``sensitive``; a group's
tag covers its children). Every export, the Central-shaped API and OData ask :func:`access_for` once per
request and pass every value through :func:`redact_value`, so the rule lives here and nowhere else.

The rule:

- **Raw** (values as collected): site administrators, project administrators, the operator at the
  command line, and coordinators of a project whose ``coordinators_see_personal`` is on.
- **Redacted** (analysts, and coordinators of other projects):
  - ``personal`` identifiers (names, phone numbers, ids, choices, numbers) become a keyed pseudonym:
    ``p_`` + the first 16 hex digits of HMAC-SHA256(project's ``pseudonym_key``, the value with its
    whitespace collapsed and its case folded). The same person gets the same pseudonym in every export of
    the project; without the key it cannot be reversed (a value from a tiny set, such as a sex, can still
    be guessed from frequencies: tag such fields ``sensitive``, not ``personal``).
  - ``personal`` free text (a ``string`` shown as a multi-line text box) is **dropped**: a pseudonym of a
    story links nothing, and the story itself may name people.
  - ``personal`` photos, audio, video, signatures and other files are **dropped** (value and file).
  - ``personal`` locations (geopoint) are **coarsened** to 0.1 degree (about 11 km), altitude and accuracy
    dropped; geotraces and geoshapes are dropped.
  - ``sensitive`` fields (what happened, experiences of violence or police conduct) are **kept**: they are
    what analysts study. The codebook marks them so that nobody publishes them unaggregated; donors get
    only suppressed aggregates (``sarhad report``).
  - Attachments that no non-personal file question names are withheld.
- Dropped values become empty cells: the table layout is the same for every role, and the codebook says
  how each column was treated.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from server import errors
from server.models import Project, ProjectRole, Role, User

PSEUDONYM_PREFIX = "p_"
PSEUDONYM_HEX_DIGITS = 16
COARSE_DEGREES_DECIMALS = 1
_GEO_SHAPES = {"geotrace", "geoshape"}
_WHITESPACE = re.compile(r"\s+")


class Treatment(enum.StrEnum):
    RAW = "raw"
    PSEUDONYMISE = "pseudonymise"
    COARSEN = "coarsen"
    DROP = "drop"


class FieldLike(Protocol):
    """What redaction needs to know about a field (``schema.Field`` and the stored field dicts)."""

    @property
    def type(self) -> str: ...
    @property
    def sensitivity(self) -> str | None: ...
    @property
    def binary(self) -> bool: ...


@dataclass(frozen=True)
class Access:
    """What one requester may see of one project's data.

    ``level`` is ``raw`` or ``redacted``; ``role`` names why (admin, coordinator, analyst, operator).
    ``key`` is the project's pseudonym key (bytes), used only when redacting.
    """

    level: str
    role: str
    key: bytes = b""

    @property
    def raw(self) -> bool:
        return self.level == "raw"

    def treatment(self, field: FieldLike | dict[str, Any]) -> Treatment:
        """How a field's values are shown to this requester."""
        if self.raw:
            return Treatment.RAW
        kind, sensitivity, binary, multiline = _describe(field)
        if sensitivity != "personal":
            return Treatment.RAW
        if binary or kind == "binary" or kind in _GEO_SHAPES or multiline:
            return Treatment.DROP
        if kind == "geopoint":
            return Treatment.COARSEN
        return Treatment.PSEUDONYMISE

    def describe(self) -> dict[str, str]:
        """For the audit log."""
        return {"level": self.level, "role": self.role}


RAW_OPERATOR = Access("raw", "operator")


def _describe(field: FieldLike | dict[str, Any]) -> tuple[str, str | None, bool, bool]:
    if isinstance(field, dict):
        return (
            str(field.get("type") or "string"),
            field.get("sensitivity"),
            bool(field.get("binary")),
            bool(field.get("multiline")),
        )
    return field.type, field.sensitivity, field.binary, bool(getattr(field, "multiline", False))


def pseudonym(key: bytes, value: str) -> str:
    """The keyed pseudonym of a value: stable per project key, irreversible without it."""
    normalised = _WHITESPACE.sub(" ", value).strip().casefold()
    digest = hmac.new(key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_DIGITS]


def coarsen_geopoint(value: str) -> str | None:
    """``lat lon [alt acc]`` → ``lat lon`` rounded to 0.1 degree; None when it is not a geopoint."""
    parts = value.split()
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        return None
    return f"{round(lat, COARSE_DEGREES_DECIMALS):.{COARSE_DEGREES_DECIMALS}f} " + (
        f"{round(lon, COARSE_DEGREES_DECIMALS):.{COARSE_DEGREES_DECIMALS}f}"
    )


def redact_value(access: Access, field: FieldLike | dict[str, Any], value: str | None) -> str | None:
    """The value as this requester may see it: itself, a pseudonym, a coarsened point, or None (dropped).

    A select_multiple answer is pseudonymised choice by choice, so that counting choices still works.
    """
    if value is None or value == "":
        return value
    treatment = access.treatment(field)
    if treatment is Treatment.RAW:
        return value
    if treatment is Treatment.DROP:
        return None
    if treatment is Treatment.COARSEN:
        return coarsen_geopoint(value)
    kind = field.get("type") if isinstance(field, dict) else field.type
    if kind == "select":
        return " ".join(pseudonym(access.key, part) for part in value.split())
    return pseudonym(access.key, value)


def _project_key(project: Project) -> bytes:
    try:
        return bytes.fromhex(project.pseudonym_key)
    except ValueError:
        return project.pseudonym_key.encode("utf-8")


def access_for_role(project: Project, role: str | None, *, site_admin: bool = False) -> Access:
    """Access for a role in a project (``None`` = no role: refused)."""
    if site_admin or role == Role.ADMIN:
        return Access("raw", "admin")
    if role == Role.COORDINATOR:
        if project.coordinators_see_personal:
            return Access("raw", "coordinator")
        return Access("redacted", "coordinator", _project_key(project))
    if role == Role.ANALYST:
        return Access("redacted", "analyst", _project_key(project))
    raise errors.forbidden("Your role in this project does not allow reading its data.")


def access_for(session: Session, user: User | None, project: Project) -> Access:
    """What ``user`` may see of ``project``'s data; ``None`` = the operator at the command line (raw).

    Raises a 403 Problem when the user holds no role in the project.
    """
    if user is None:
        return RAW_OPERATOR
    if user.is_site_admin:
        return access_for_role(project, None, site_admin=True)
    row = session.get(ProjectRole, (user.id, project.id))
    return access_for_role(project, row.role if row else None)
