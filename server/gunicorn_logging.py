"""gunicorn's logs without secrets: ``RedactingLogger`` prints device keys and session tokens in
addresses as ``***`` (see :mod:`server.log_redaction`), in the access log whatever its format, and in
the error log. Used through ``server/gunicorn_conf.py``:
``gunicorn --config python:server.gunicorn_conf 'server.wsgi:app' ...``.

A module of its own because gunicorn does not run on Windows, where ``sarhad serve`` must still start.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from server.log_redaction import MASK, RedactingFilter, redact

# Atoms of gunicorn's access log format that hold the address, the referrer or credentials.
_ADDRESS_ATOMS = ("r", "U", "q", "f", "{raw_uri}e", "{path_info}e", "{query_string}e", "{referer}i")
_CREDENTIAL_ATOMS = ("{authorization}i", "{cookie}i", "{proxy-authorization}i")


class RedactingLogger(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.addFilter(RedactingFilter())  # messages such as "Error handling request /v1/key/..."

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in _ADDRESS_ATOMS:
            if isinstance(atoms.get(name), str):
                atoms[name] = redact(atoms[name])
        for name in _CREDENTIAL_ATOMS:
            if atoms.get(name) not in (None, "-"):
                atoms[name] = MASK
        return atoms
