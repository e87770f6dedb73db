"""``sarhad-sync``'s one retry policy (urllib3's Retry through requests' HTTPAdapter) against a real
HTTP server on loopback: statuses and cut answers are retried with the configured budget, the upload
chunk is sent once, and what still fails is "central unreachable" (exit 3)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sync_client.client import CentralClient, ExitCode, SyncError
from sync_client.config import load_config


class Script:
    """What the server answers, request by request: ("status", code) or ("cut", None) or ("ok", None)."""

    def __init__(self) -> None:
        self.plan: list[tuple[str, int | None]] = []
        self.seen: list[str] = []


@pytest.fixture
def central() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            script.seen.append(self.command)
            step, code = script.plan.pop(0) if script.plan else ("ok", None)
            body = json.dumps({"ok": True, "n": len(script.seen)}).encode()
            if step == "status":
                self.send_response(code or 503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            elif step == "cut":  # headers promise more than is sent, then the connection closes
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) + 100))
                self.end_headers()
                self.wfile.write(body[:5])
                self.close_connection = True
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", script
    server.shutdown()
    thread.join(timeout=10)


def _client(url: str, retries: int) -> CentralClient:
    config = load_config(
        {
            "central_url": url,
            "token": "t",
            "retries": retries,
            "backoff_seconds": 0.01,
            "backoff_max_seconds": 0.05,
        },
        environ={},
    )
    return CentralClient(config)


def test_statuses_and_cut_answers_are_retried_within_the_budget(central: tuple[str, Script]) -> None:
    url, script = central
    client = _client(url, retries=4)
    script.plan = [("status", 503), ("cut", None), ("status", 429)]
    assert client.post("/v1/sync/projects/1/inventory", data=b"x")["ok"] is True
    assert script.seen == ["POST"] * 4 and client.traffic.retries == 3


def test_what_outlasts_the_retries_is_unreachable(central: tuple[str, Script]) -> None:
    url, script = central
    client = _client(url, retries=2)
    script.plan = [("status", 503)] * 3
    with pytest.raises(SyncError) as failed:
        client.get("/v1/sync/hub")
    assert failed.value.exit_code == ExitCode.UNREACHABLE and "503" in failed.value.message
    assert len(script.seen) == 3
    script.seen.clear()
    script.plan = [("cut", None)] * 3
    with pytest.raises(SyncError) as cut:
        client.get("/v1/sync/hub")
    assert cut.value.exit_code == ExitCode.UNREACHABLE and len(script.seen) == 3


def test_an_upload_chunk_is_sent_once(central: tuple[str, Script]) -> None:
    url, script = central
    client = _client(url, retries=5)
    script.plan = [("cut", None)]
    with pytest.raises(SyncError) as cut:
        client.put("/v1/sync/uploads/abc", params={"offset": 0}, data=b"chunk", retry=False)
    assert cut.value.exit_code == ExitCode.UNREACHABLE and script.seen == ["PUT"]
