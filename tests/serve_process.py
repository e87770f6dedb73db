"""``sarhad serve`` (waitress) in a child process on a store prepared through the CLI: a project with the
small test form and a device key. Shared by the slow-client and write-ahead-log tests."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.conftest import ROOT, AppEnv, RunCli, free_port
from tests.openrosa_setup import small_xform


@dataclass
class Served:
    url: str
    port: int
    key: str
    project: str

    @property
    def submission_path(self) -> str:
        return f"/v1/key/{self.key}/projects/{self.project}/submission"


def prepare_store(env: AppEnv, run_cli: RunCli, tmp: Path) -> tuple[str, str]:
    """The project "Serve" with the small form and a device: (device key, project id)."""
    run_cli(env, "project", "create", "Serve")
    form = tmp / "small.xml"
    form.write_bytes(small_xform())
    run_cli(env, "forms", "publish", str(form), "--project", "Serve")
    made = run_cli(env, "app-user", "create", "Tablet", "--project", "Serve", "--base-url", "http://x").stdout
    match = re.search(r"/v1/key/([^/\s]+)/projects/(\d+)", made)
    assert match, made
    return match.group(1), match.group(2)


@contextmanager
def sarhad_serve(env: AppEnv, run_cli: RunCli, tmp: Path, **settings: str) -> Iterator[Served]:
    key, project = prepare_store(env, run_cli, tmp)
    port = free_port()
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
            env={**env.env, **settings},
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    requests.get(f"{url}/v1/health", timeout=1)
                    break
                except (requests.ConnectionError, requests.Timeout):
                    assert time.monotonic() < deadline, "sarhad serve did not start"
                    time.sleep(0.2)
            yield Served(url, port, key, project)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
