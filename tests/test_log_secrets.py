"""No secret in any log: a real server (gunicorn with Sarhad's config and its access log on, then
``sarhad serve``) writes its logs to files while a web user signs in (once wrongly), reads, signs out,
and tablets submit by key and by Digest password; then every token and password used is looked for in
every line the server wrote."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.collect_emulator import CollectEmulator, Instance
from tests.conftest import ROOT, AppEnv, RunCli, free_port
from tests.openrosa_setup import digest_url, new_uuid, small_instance, small_xform

ADMIN_PASSWORD = "a long admin pass phrase"
DEVICE_PASSWORD = "tablet pass phrase 7"


def _wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            requests.get(f"{url}/v1/health", timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise AssertionError("the server did not start")


def _prepare(env: AppEnv, run_cli: RunCli, tmp: Path) -> tuple[str, str]:
    """A project with a form, an administrator and two app users; returns (key token, project id)."""
    run_cli(env, "project", "create", "Logs")
    run_cli(env, "user", "create", "admin@example.tj", "--role", "admin", input=f"{ADMIN_PASSWORD}\n")
    form = tmp / "small.xml"
    form.write_bytes(small_xform())
    run_cli(env, "forms", "publish", str(form), "--project", "Logs")
    made = run_cli(
        env, "app-user", "create", "Tablet 1", "--project", "Logs", "--base-url", "http://x"
    ).stdout
    match = re.search(r"/v1/key/([^/\s]+)/projects/(\d+)", made)
    assert match, made
    run_cli(
        env,
        "app-user",
        "create",
        "facilitator",
        "--project",
        "Logs",
        "--with-password",
        input=f"{DEVICE_PASSWORD}\n",
    )
    return match.group(1), match.group(2)


def _exercise(url: str, key: str, project: str) -> list[str]:
    """Everything a day brings; returns the secrets used."""
    sessions = f"{url}/v1/sessions"
    wrong = requests.post(sessions, json={"email": "admin@example.tj", "password": "wrong " + ADMIN_PASSWORD})
    assert wrong.status_code == 401
    signed_in = requests.post(sessions, json={"email": "admin@example.tj", "password": ADMIN_PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{url}/v1/projects", headers=bearer).status_code == 200
    assert requests.get(f"{url}/v1/projects?st={token}").status_code in (200, 401)

    by_key = CollectEmulator(f"{url}/v1/key/{key}/projects/{project}")
    assert [f.form_id for f in by_key.form_list()] == ["small"]
    by_key.download_forms()
    sent = by_key.submit(Instance("small", (iid := new_uuid()), small_instance(iid), {"photo.jpg": b"JPEG"}))
    assert sent.sent, sent
    by_password = CollectEmulator(
        digest_url(url, int(project)), username="facilitator", password=DEVICE_PASSWORD
    )
    iid = new_uuid()
    assert by_password.submit(Instance("small", iid, small_instance(iid, photo=None))).sent

    signed_out = requests.delete(f"{sessions}/{token}", headers=bearer)
    assert signed_out.status_code == 200, signed_out.text
    assert requests.get(f"{url}/v1/projects", headers=bearer).status_code == 401  # the token is gone
    return [token, key, ADMIN_PASSWORD, DEVICE_PASSWORD]


def _assert_clean(logs: list[Path], secrets: list[str]) -> str:
    text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
    leaked = [s for s in secrets if s in text]
    assert leaked == [], f"secrets in the logs: {[s[:6] + '…' for s in leaked]}"
    return text


def test_gunicorn_logs_hold_no_secret(
    make_env: Callable[[], AppEnv], run_cli: RunCli, tmp_path: Path
) -> None:
    env = make_env()
    key, project = _prepare(env, run_cli, tmp_path)
    port = free_port()
    access, errors, stderr = tmp_path / "access.log", tmp_path / "error.log", tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "python:server.gunicorn_conf",
                "server.wsgi:app",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "2",
                "--worker-class",
                "gthread",
                "--access-logfile",
                str(access),
                "--access-logformat",
                '%(h)s "%(r)s" %(s)s %(U)s %(q)s "%(f)s" "%({authorization}i)s" "%({raw_uri}e)s"',
                "--error-logfile",
                str(errors),
                "--log-level",
                "debug",
            ],
            env={**env.env, "SARHAD_LOG_LEVEL": "DEBUG"},
            cwd=ROOT,
            stdout=err,
            stderr=err,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, proc)
            secrets = _exercise(url, key, project)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = _assert_clean([access, errors, stderr], secrets)
    assert "/v1/key/***/projects/" in text and "/v1/sessions/***" in text  # the requests were logged
    assert "st=***" in text


def test_sarhad_serve_logs_hold_no_secret(
    make_env: Callable[[], AppEnv], run_cli: RunCli, tmp_path: Path
) -> None:
    env = make_env()
    key, project = _prepare(env, run_cli, tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
            env={**env.env, "SARHAD_LOG_LEVEL": "INFO"},
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, proc)
            secrets = _exercise(url, key, project)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = _assert_clean([log], secrets)
    assert "/v1/key/***/projects/" in text and "/v1/sessions/***" in text
