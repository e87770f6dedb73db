"""The real `sarhad` command: projects, users, database upgrade and doctor."""

import os
from collections.abc import Callable

from sqlalchemy import select

from server.models import User
from tests.conftest import AppEnv, RunCli


def test_projects_and_users(make_env: Callable[[], AppEnv], run_cli: RunCli) -> None:
    env = make_env()
    out = run_cli(env, "project", "create", "Khujand pilot").stdout
    assert "created project" in out and "Khujand pilot" in out
    assert "Khujand pilot" in run_cli(env, "project", "list").stdout
    again = run_cli(env, "project", "create", "Khujand pilot", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr

    made = run_cli(
        env,
        "user",
        "create",
        "Coord@Example.org",
        "--role",
        "coordinator",
        "--project",
        "Khujand pilot",
        input="a long enough password\n",
    )
    assert "coordinator in project Khujand pilot" in made.stdout
    short = run_cli(env, "user", "create", "x@example.org", "--role", "admin", input="short\n", check=False)
    assert short.returncode == 1 and "at least" in short.stderr

    with env.app().extensions["sarhad.db"].read() as session:
        user = session.scalar(select(User).where(User.email == "coord@example.org"))
        assert user is not None and not user.is_site_admin
        assert user.password_hash and "a long enough password" not in user.password_hash


def test_db_upgrade_is_repeatable(make_env: Callable[[], AppEnv], run_cli: RunCli) -> None:
    env = make_env()
    assert "up to date" in run_cli(env, "db", "upgrade").stdout
    assert "up to date" in run_cli(env, "db", "upgrade").stdout


def test_doctor_finds_missing_and_orphan_files(make_env: Callable[[], AppEnv], run_cli: RunCli) -> None:
    env = make_env()
    database = env.app().extensions["sarhad.db"]
    with database.write() as w:
        kept = w.store_bytes(b"a photo of the flip chart")
        lost = w.store_bytes(b"an audit log")
    assert "ok: rows and files agree" in run_cli(env, "doctor", "--verify").stdout

    lost_path = database.blobs.path(lost)
    lost_path.unlink()
    orphan = database.blobs.path("ab" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"no row names me")
    kept_path = database.blobs.path(kept)
    os.chmod(kept_path, 0o644)
    kept_path.write_bytes(b"bit rot")

    result = run_cli(env, "doctor", "--verify", check=False)
    assert result.returncode == 1
    assert f"missing file: {lost}" in result.stdout
    assert f"orphan file: {'ab' * 32}" in result.stdout
    assert f"corrupt file: {kept}" in result.stdout
