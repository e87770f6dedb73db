"""No secret in any log: device keys and session tokens travel in addresses (``/v1/key/<token>/…``,
``DELETE /v1/sessions/<token>``), so every line a log prints about a request is passed through
:func:`redact` first, which prints them as ``***``.

It is installed on the handlers of the root logger (every ``server.*`` and ``waitress`` message) and on
Werkzeug's request log (the test servers) by :func:`install`, which ``create_app`` calls; the access log
of ``sarhad serve`` (:mod:`server.serving`) passes its lines through :func:`redact` itself; gunicorn's
access and error logs use :class:`server.gunicorn_logging.RedactingLogger`
(``--config python:server.gunicorn_conf``).
"""

from __future__ import annotations

import logging
import re

MASK = "***"
_SECRET_IN_PATH = re.compile(r"(/v1/key/|/v1/sessions/)[^/?#\s\"']+")
# Query parameters that carry a secret: Central's session token (?st=), and passphrases or tokens a
# client might put there (Central's CSV export takes a key's passphrase as ?{keyId}=…).
_SECRET_IN_QUERY = re.compile(
    r"((?:^|[?&])(?:st|token|access_token|passphrase|password|\d+)=)[^&#\s\"']*", re.I
)


def redact(text: str) -> str:
    """``text`` with every device key, session token and secret query value replaced by ``***``."""
    text = _SECRET_IN_PATH.sub(lambda m: m.group(1) + MASK, text)
    return _SECRET_IN_QUERY.sub(lambda m: m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with :func:`redact` (it keeps every record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the logging module reports it itself
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Redact Werkzeug's request log and everything the root logger's handlers write (idempotent)."""
    werkzeug_log = logging.getLogger("werkzeug")
    if _FILTER not in werkzeug_log.filters:
        werkzeug_log.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
