"""`sarhad app-user` and the Collect settings QR code, through the real command."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import select

from server.models import AppUser
from server.projects import create_project
from server.qr import collect_settings_payload, decode_payload
from tests.conftest import AppEnv, RunCli


def test_qr_payload_is_what_collect_imports() -> None:
    payload = collect_settings_payload("https://hub/v1/key/T/projects/3", "Хоруғ", username=None)
    settings = decode_payload(payload)
    assert settings == {
        "general": {"server_url": "https://hub/v1/key/T/projects/3"},
        "admin": {},
        "project": {"name": "Хоруғ"},
    }


def test_create_list_rotate_revoke(make_env: Callable[[], AppEnv], run_cli: RunCli) -> None:
    env = make_env()
    with env.app().extensions["sarhad.db"].write() as w:
        create_project(w.session, "Khorog")
    created = run_cli(
        env,
        "app-user",
        "create",
        "Tablet 1",
        "--project",
        "Khorog",
        "--base-url",
        "https://sarhad.example.org",
    ).stdout
    url = re.search(r"Collect server URL: (\S+)", created).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(r"https://sarhad\.example\.org/v1/key/[A-Za-z0-9_-]{64}/projects/1", url)
    png = env.data_dir / "qr" / "Khorog-Tablet_1.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    token = url.split("/key/")[1].split("/")[0]

    with_password = run_cli(
        env, "app-user", "create", "Hub tablet", "--project", "1", "--with-password", input="пароли-дароз\n"
    ).stdout
    assert "/v1/projects/1" in with_password and "Digest" in with_password
    assert "пароли-дароз" not in with_password

    listing = run_cli(env, "app-user", "list", "--project", "Khorog").stdout
    assert "Tablet 1\ttoken\tactive" in listing and "Hub tablet\ttoken+password\tactive" in listing

    rotated = run_cli(
        env,
        "app-user",
        "rotate",
        "Tablet 1",
        "--project",
        "Khorog",
        "--base-url",
        "https://sarhad.example.org",
    ).stdout
    assert token not in rotated and "/v1/key/" in rotated
    assert "revoked app user 1" in run_cli(env, "app-user", "revoke", "1", "--project", "Khorog").stdout
    again = run_cli(env, "app-user", "rotate", "Tablet 1", "--project", "Khorog", check=False)
    assert again.returncode == 1 and "revoked" in again.stderr

    missing = run_cli(env, "app-user", "revoke", "Nobody", "--project", "Khorog", check=False)
    assert missing.returncode == 1 and "no app user" in missing.stderr

    with env.app().extensions["sarhad.db"].read() as session:
        stored = session.scalars(select(AppUser).order_by(AppUser.id)).all()
        assert all(len(u.token_sha256 or "") == 64 for u in stored)  # only hashes are kept
        assert stored[1].digest_ha1 and len(stored[1].digest_ha1) == 32
        assert stored[0].revoked_at is not None and stored[1].revoked_at is None
