"""The Collect settings QR code: base64(zlib(UTF-8 JSON)) of the project settings Collect imports."""

from __future__ import annotations

import base64
import io
import json
import socket
import zlib
from pathlib import Path

import click
import segno


def collect_settings_payload(server_url: str, project_name: str, username: str | None = None) -> str:
    """What Collect reads from the code. Never a password: a token URL needs none, and a device with a
    password has it typed in by the facilitator."""
    general: dict[str, str] = {"server_url": server_url}
    if username is not None:
        general["username"] = username
    settings = {"general": general, "admin": {}, "project": {"name": project_name}}
    packed = zlib.compress(json.dumps(settings, ensure_ascii=False).encode("utf-8"))
    return base64.b64encode(packed).decode("ascii")


def decode_payload(payload: str) -> dict[str, object]:
    return json.loads(zlib.decompress(base64.b64decode(payload)).decode("utf-8"))  # type: ignore[no-any-return]


def terminal_qr(payload: str) -> str:
    """The code drawn with block characters, to show in a terminal."""
    out = io.StringIO()
    segno.make(payload, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def print_qr(payload: str) -> None:
    click.echo(terminal_qr(payload))


def save_qr_png(payload: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    segno.make(payload, error="m").save(str(path), scale=6, border=4)


def lan_address() -> str:
    """This machine's address on its local network, found without sending a packet (a UDP socket is
    only connected, which picks the outgoing interface); 127.0.0.1 when there is no network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"
