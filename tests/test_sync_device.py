"""``sarhad-sync pull-device``: Collect storage folders of each layout, into the hub and straight to
central; drafts reported and never sent; a second pull skips what is there."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import LiveServer
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

LAYOUTS = {
    "old": Path("odk"),
    "android": Path("Android/data/org.odk.collect.android/files"),
    "projects": Path(
        "Android/data/org.odk.collect.android/files/projects/0f4c5a8e-1111-4c1e-9a7b-2b1c3d4e5f60"
    ),
}


def _tablet(top: Path, layout: str, n: int, *, drafts: int = 0, with_db: bool = False) -> list[str]:
    """A copied tablet: ``n`` finalised instances (every other with a photo) and some drafts."""
    root = top / LAYOUTS[layout]
    (root / "forms").mkdir(parents=True)
    (root / "forms" / "Sync survey.xml").write_bytes(form_xml())
    ids, states = [], []
    for k in range(n + drafts):
        name = f"Sync survey_2026-11-0{k % 9 + 1}_10-00-{k:02d}"
        folder = root / "instances" / name
        folder.mkdir(parents=True)
        instance = new_id()
        picture = f"{k}.jpg" if k % 2 == 0 else None
        (folder / f"{name}.xml").write_bytes(instance_xml(instance, f"{layout} {k}", picture))
        if picture:
            (folder / picture).write_bytes(photo(k, 5_000))
        draft = k >= n
        states.append((f"{root}/instances/{name}/{name}.xml", "incomplete" if draft else "complete"))
        if not draft:
            ids.append(instance)
    if with_db:
        (root / "metadata").mkdir()
        con = sqlite3.connect(root / "metadata" / "instances.db")
        con.execute("CREATE TABLE instances (_id INTEGER PRIMARY KEY, instanceFilePath TEXT, status TEXT)")
        con.executemany("INSERT INTO instances (instanceFilePath, status) VALUES (?, ?)", states)
        con.commit()
        con.close()
    return ids


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_pull_device_into_the_hub(layout: str, tmp_path: Path) -> None:
    hub = Store(sqlite_env(tmp_path / "hub"))
    hub.publish(hub.project("Khorog"), form_xml())
    ids = _tablet(
        tmp_path / "tablet", layout, 4, drafts=2 if layout == "projects" else 0, with_db=layout == "projects"
    )
    env = sync_env("http://unused", "", hub.env.data_dir)
    first = run_sync(env, "pull-device", str(tmp_path / "tablet"))
    assert first.returncode == 0, first.stderr + first.stdout
    assert "found 4 finalised instance(s)" in first.stdout and "into the hub: 4 created" in first.stdout
    held = {h[2] for h in hub.holdings()}
    assert held == set(ids)
    if layout == "projects":
        assert "drafts never finalised on the tablet (not sent; finalise them in Collect): 2" in first.stdout
    else:
        assert "metadata/instances.db was not in the copy" in first.stdout
    with_photo = [h for h in hub.holdings() if h[4]]
    assert len(with_photo) == 2 and all(dict(h[4]).keys() <= {"0.jpg", "2.jpg"} for h in with_photo)
    again = run_sync(env, "pull-device", str(tmp_path / "tablet"))
    assert "into the hub: 4 duplicate" in again.stdout and len(hub.holdings()) == 4


def test_pull_device_straight_to_central(central: tuple[Store, LiveServer], tmp_path: Path) -> None:
    store, live = central
    project = store.project("Vanj")
    store.publish(project, form_xml())
    token = store.hub_token("Vanj laptop", project)
    ids = _tablet(tmp_path / "tablet", "android", 3)
    hub_dir = tmp_path / "hub"
    sqlite_env(hub_dir)
    env = sync_env(live.url, token, hub_dir)
    sent = run_sync(env, "pull-device", str(tmp_path / "tablet"), "--to", "central", "--project", "Vanj")
    assert sent.returncode == 0, sent.stderr + sent.stdout
    assert {h[2] for h in store.holdings()} == set(ids)
    assert sum(1 for h in store.holdings() if h[4]) == 2

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_sync(env, "pull-device", str(empty))
    assert nothing.returncode == 2 and "holds no Collect storage" in nothing.stderr


def _broken_instance(top: Path, layout: str) -> str:
    """An instance folder whose XML does not parse (a copy cut short): its folder name."""
    name = "Sync survey_2026-11-09_11-00-00"
    folder = top / LAYOUTS[layout] / "instances" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.xml").write_bytes(instance_xml(new_id(), "cut")[:-40])
    return name


def test_pull_device_with_an_unreadable_instance_exits_5(
    central: tuple[Store, LiveServer], tmp_path: Path
) -> None:
    """An instance skipped because its XML does not parse is not at central: exit 5, and it is listed,
    into the hub and straight to central alike."""
    store, live = central
    project = store.project("Ishkoshim")
    store.publish(project, form_xml())
    token = store.hub_token("Ishkoshim laptop", project)
    ids = _tablet(tmp_path / "tablet", "android", 2)
    broken = _broken_instance(tmp_path / "tablet", "android")
    hub = Store(sqlite_env(tmp_path / "hub"))
    hub.publish(hub.project("Ishkoshim"), form_xml())
    env = sync_env(live.url, token, hub.env.data_dir)

    to_hub = run_sync(env, "pull-device", str(tmp_path / "tablet"))
    assert to_hub.returncode == 5, to_hub.stderr + to_hub.stdout
    assert f"skipped {broken}: the XML does not parse" in to_hub.stdout
    assert {h[2] for h in hub.holdings()} == set(ids)

    to_central = run_sync(
        env, "pull-device", str(tmp_path / "tablet"), "--to", "central", "--project", "Ishkoshim"
    )
    assert to_central.returncode == 5, to_central.stderr + to_central.stdout
    assert f"skipped {broken}: the XML does not parse" in to_central.stdout
    assert {h[2] for h in store.holdings()} == set(ids)
