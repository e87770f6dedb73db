"""``sarhad-sync push --to-openrosa``: the hub's submissions to an OpenRosa server (a running Sarhad
stands in for ODK Central), by HEAD + POST like Collect, split when too large, 409 reported once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from server.devices import create_app_user
from server.models import Project, SubmissionAttachment
from tests.conftest import AppEnv, serve_in_thread
from tests.test_sync_support import (
    Store,
    form_xml,
    instance_xml,
    new_id,
    photo,
    run_sync,
    sqlite_env,
    sync_env,
)


def test_push_to_openrosa_server(make_env: Callable[[], AppEnv], tmp_path: Path) -> None:
    # The target accepts at most 80 kB per request: a submission with two 50 kB photos needs two POSTs.
    target = Store(make_env(), settings={"max_request_bytes": 80_000})
    project = target.project("Ishkoshim")
    target.publish(project, form_xml())
    with target.database.write() as w:
        row = w.session.get(Project, project)
        assert row is not None
        _user, device_token = create_app_user(w.session, row, "Hub laptop", realm="Sarhad")
    live, stop = serve_in_thread(target.app)
    try:
        hub = Store(sqlite_env(tmp_path / "hub"))
        hub_project = hub.project("Ishkoshim")
        hub.publish(hub_project, form_xml())
        two = new_id()
        hub.submit(
            hub_project,
            instance_xml(two, "Ishkoshim", "a.jpg"),
            {"a.jpg": photo(1, 50_000), "b.jpg": photo(2, 50_000)},
        )
        hub.submit(hub_project, instance_xml(new_id(), "Zong"))
        disputed = new_id()
        hub.submit(hub_project, instance_xml(disputed, "Vrang"))
        target.submit(project, instance_xml(disputed, "Vrang (from another tablet)"))

        url = f"{live.url}/v1/key/{device_token}/projects/{project}"
        env = sync_env("", "", hub.env.data_dir)
        first = run_sync(env, "push", "--to-openrosa", url)
        assert first.returncode == 5, first.stdout + first.stderr
        assert "2 sent now, 0 sent before" in first.stdout
        assert device_token not in first.stdout + first.stderr  # printed as /v1/key/***/
        assert f"conflict (not retried): sync_survey {disputed}" in first.stdout
        held = {h[2]: dict(h[4]) for h in target.holdings() if h[0] == "version"}
        assert set(held[two]) == {"a.jpg", "b.jpg"}  # both parts of the split upload arrived
        with target.database.read() as session:
            names = session.scalars(
                select(SubmissionAttachment.name).where(SubmissionAttachment.blob_sha256.is_(None))
            )
            assert list(names) == []
        conflicts = [h for h in target.holdings() if h[0] == "conflict"]
        assert [c[2] for c in conflicts] == [disputed]

        again = run_sync(env, "push", "--to-openrosa", url)
        assert "0 sent now, 2 sent before" in again.stdout and again.returncode == 5
        assert len([h for h in target.holdings() if h[0] == "conflict"]) == 1

        wrong = run_sync(env, "push", "--to-openrosa", f"{live.url}/v1/key/nope/projects/{project}")
        assert wrong.returncode == 4 and "refused the credentials" in wrong.stderr
        assert "/v1/key/***/projects" in wrong.stderr
    finally:
        stop()
