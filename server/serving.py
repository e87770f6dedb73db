"""``sarhad serve``: the application on waitress, the WSGI server a field hub runs.

Why waitress: it is pure Python (nothing to compile on a Raspberry Pi, and it runs on Windows, where
gunicorn does not), and its I/O loop reads each request *whole* — headers and body, the body spooled to
a temporary file past ``inbuf_overflow`` — before a worker thread sees it. A tablet on bad Wi-Fi that
trickles its upload at a few bytes a second therefore holds a socket, not one of the threads, and the
other tablets' submissions are answered at once. A connection that sends nothing for
``serve_channel_timeout_seconds`` is closed, and a request that never finished arriving never reaches
Sarhad, so nothing of a stalled body is stored.

Waitress writes no access log of its own: :class:`AccessLog` writes one, through
:func:`server.log_redaction.redact`, so that device keys and session tokens appear as ``***``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask

from server.config import settings
from server.log_redaction import redact

log = logging.getLogger("sarhad.access")
StartResponse = Callable[..., Any]


class AccessLog:
    """WSGI middleware: one line per request, in the common log format plus the time taken, secrets
    masked."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        status: list[str] = ["-"]

        def recording(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = line.split(" ", 1)[0]
            return start_response(line, headers, exc_info)

        return _Logged(self.app(environ, recording), environ, status, started)


class _Logged:
    """The response body, passed on unchanged; its ``close()`` writes the log line (the WSGI server
    calls it once the last byte was sent or the client went away)."""

    def __init__(self, body: Iterable[bytes], environ: dict[str, Any], status: list[str], started: float):
        self.body, self.environ, self.status, self.started = body, environ, status, started
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.body:
            self.sent += len(piece)
            yield piece

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            env = self.environ
            target = env.get("PATH_INFO", "") + (f"?{env['QUERY_STRING']}" if env.get("QUERY_STRING") else "")
            line = (
                f'{env.get("REMOTE_ADDR", "-")} "{env.get("REQUEST_METHOD", "-")} {target} '
                f'{env.get("SERVER_PROTOCOL", "-")}" {self.status[0]} {self.sent} '
                f"{time.monotonic() - self.started:.3f}s"
            )
            log.info("%s", redact(line))


def serve(app: Flask, host: str, port: int) -> None:
    """Serve ``app`` on waitress until interrupted."""
    import waitress

    conf = settings(app)
    # "Task queue depth is N" at every burst of requests: a queue is what the threads are for.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    timeout = conf.serve_channel_timeout_seconds
    waitress.serve(
        AccessLog(app.wsgi_app),
        host=host,
        port=port,
        threads=conf.serve_threads,
        connection_limit=conf.serve_connection_limit,
        channel_timeout=timeout,
        # Idle connections are looked for this often: a stalled one goes within 1.5x the timeout.
        cleanup_interval=max(1, timeout // 2),
        max_request_body_size=conf.max_request_bytes,
        ident="Sarhad",
        # Behind a proxy, werkzeug's ProxyFix (SARHAD_TRUSTED_PROXIES) reads X-Forwarded-*; waitress
        # must leave them alone.
        clear_untrusted_proxy_headers=False,
    )
