"""Clients on a bad link, for the slow-client test and bench/serve_slow_clients.py: connections that
trickle a request a few bytes a second — some still in their headers, some in their body — and a
submission whose body stalls for good. Raw sockets, so that nothing buffers on the client's side."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid


def multipart_submission(xml: bytes) -> tuple[bytes, str]:
    """A Collect-style multipart body holding only the submission XML, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="xml_submission_file"; '
        f'filename="submission.xml"\r\nContent-Type: text/xml\r\n\r\n'.encode()
        + xml
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def submission_head(path: str, content_type: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: hub\r\nX-OpenRosa-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


class SlowClients:
    """``headers`` connections trickling an endless header block and ``bodies`` connections that sent
    their headers and trickle a large body, each ``step`` bytes every ``interval`` seconds."""

    def __init__(
        self, port: int, path: str, headers: int, bodies: int, step: int = 2, interval: float = 0.5
    ) -> None:
        self.step, self.interval = step, interval
        self._stop = threading.Event()
        self.sockets: list[tuple[socket.socket, bytes]] = []
        for _ in range(headers):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            endless = f"POST {path} HTTP/1.1\r\nHost: hub\r\nX-Padding: ".encode() + b"a" * 100_000
            self.sockets.append((sock, endless))
        body, ctype = multipart_submission(b"<data>" + b"x" * 100_000 + b"</data>")
        for _ in range(bodies):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(submission_head(path, ctype, len(body)))
            self.sockets.append((sock, body))
        self.sent = 0
        self.closed_by_server = 0
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock, _ in self.sockets:
            sock.close()

    def _trickle(self) -> None:
        offset = 0
        alive = list(self.sockets)
        while alive and not self._stop.wait(self.interval):
            for pair in list(alive):
                sock, payload = pair
                try:
                    sock.sendall(payload[offset : offset + self.step])
                except OSError:
                    alive.remove(pair)
                    self.closed_by_server += 1
            offset += self.step
            self.sent = offset


def stall(port: int, path: str, xml: bytes, keep_back: int = 20) -> socket.socket:
    """Send a submission but for its last ``keep_back`` bytes, then nothing more: the open socket."""
    body, ctype = multipart_submission(xml)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(submission_head(path, ctype, len(body)) + body[:-keep_back])
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (end of file or a reset)."""
    sock.settimeout(within)
    with contextlib.suppress(TimeoutError):
        try:
            while sock.recv(4096):
                pass  # an answer (it should not come), then the close
            return True
        except ConnectionResetError:
            return True
    return False
