"""USB bundles: export at the hub, import at central (idempotent), the receipt read back at the hub;
a tampered, foreign or revoked bundle is refused with a clear message."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from server.models import Hub, SubmissionVersion
from server.sync import keys
from tests.conftest import AppEnv, LiveServer
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


def test_bundle_round_trip_and_refusals(
    central: tuple[Store, LiveServer], make_env: Callable[[], AppEnv], tmp_path: Path
) -> None:
    store, live = central
    project = store.project("Murghob")
    store.publish(project, form_xml())
    token = store.hub_token("Murghob-1", project)
    hub = Store(sqlite_env(tmp_path / "hub"))
    hub_project = hub.project("Murghob")
    hub.publish(hub_project, form_xml())
    big = photo(1, 1_500_000)  # more than one encrypted segment
    hub.submit(hub_project, instance_xml(new_id(), "Alichur", "a.jpg"), {"a.jpg": big})
    clash = new_id()
    hub.submit(hub_project, instance_xml(clash, "Karakul"))
    hub.submit(hub_project, instance_xml(clash, "Karakul again"))  # kept as a conflict at the hub
    hub.submit(hub_project, instance_xml(new_id(), "Rangkul"))
    central_keys = {
        "SARHAD_SYNC_CENTRAL_BUNDLE_KEY": keys.raw_public_b64(keys.bundle_key(store.env.data_dir)),
        "SARHAD_SYNC_CENTRAL_SIGNING_KEY": keys.raw_public_b64(keys.signing_key(store.env.data_dir)),
    }
    # The hub never reached central: it knows only the keys it was given with its token.
    offline = sync_env("https://central.invalid", token, hub.env.data_dir, **central_keys)
    online = {**offline, "SARHAD_SYNC_CENTRAL_URL": live.url}
    bundle = tmp_path / "usb" / "murghob.sarhad"
    bundle.parent.mkdir()

    exported = run_sync(offline, "bundle", "export", str(bundle))
    assert exported.returncode == 0, exported.stderr
    assert "4 submission versions, 1 files (1500000 bytes)" in exported.stdout
    assert b"Alichur" not in bundle.read_bytes() and token.encode() not in bundle.read_bytes()

    imported = run_sync(online, "bundle", "import", str(bundle))
    assert imported.returncode == 0, imported.stderr + imported.stdout
    assert "central holds 4 of the 4" in imported.stdout
    assert {h[1:] for h in store.holdings()} == {h[1:] for h in hub.holdings()}
    with store.database.read() as session:
        sources = set(session.scalars(select(SubmissionVersion.source)))
        assert sources == {"bundle"}
        pinned = session.scalar(select(Hub.signing_key).where(Hub.name == "Murghob-1"))
        assert pinned == keys.raw_public_b64(keys.signing_key(hub.env.data_dir))
    again = run_sync(online, "bundle", "import", str(bundle))
    assert again.returncode == 0 and "central holds 4 of the 4" in again.stdout
    with store.database.read() as session:
        assert session.scalar(select(func.count()).select_from(SubmissionVersion)) == 3

    receipt = Path(str(bundle) + ".receipt.json")
    read = run_sync(offline, "bundle", "receipt", str(receipt))
    assert read.returncode == 0 and "marked 4 as confirmed" in read.stdout, read.stderr
    status = json.loads(run_sync(offline, "status", "--json").stdout)
    assert status["total"]["pending"] == 0 and status["total"]["confirmedAtCentral"] == 4
    nothing_new = run_sync(offline, "bundle", "export", str(tmp_path / "next.sarhad"))
    assert (
        "0 submission versions, 0 files" in nothing_new.stdout and "4 already confirmed" in nothing_new.stdout
    )

    forged = json.loads(receipt.read_text())
    forged["receipt"]["items"][0]["instanceId"] = "uuid:forged"
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    refused_receipt = run_sync(offline, "bundle", "receipt", str(tmp_path / "forged.json"))
    assert (
        refused_receipt.returncode == 6
        and "does not carry central's valid signature" in refused_receipt.stderr
    )

    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "tampered.sarhad"
    tampered.write_bytes(bytes(data))
    answer = run_sync(online, "bundle", "import", str(tampered))
    assert answer.returncode == 6 and "changed after the hub made it" in answer.stderr

    other_central = Store(make_env())
    foreign_key = keys.raw_public_b64(keys.bundle_key(other_central.env.data_dir))
    foreign = tmp_path / "foreign.sarhad"
    hub.submit(hub_project, instance_xml(new_id(), "Bash-Gumbez"))
    run_sync({**offline, "SARHAD_SYNC_CENTRAL_BUNDLE_KEY": foreign_key}, "bundle", "export", str(foreign))
    answer = run_sync(online, "bundle", "import", str(foreign))
    assert answer.returncode == 6 and "made for another central server" in answer.stderr

    with store.database.write() as w:
        found = w.session.scalar(select(Hub).where(Hub.name == "Murghob-1"))
        assert found is not None
        found.revoked_at = found.created_at
    fresh = tmp_path / "fresh.sarhad"
    run_sync(offline, "bundle", "export", str(fresh))
    answer = run_sync(online, "bundle", "import", str(fresh))
    assert answer.returncode == 6 and "token was revoked" in answer.stderr
    junk = tmp_path / "junk.sarhad"
    junk.write_bytes(b"hello" * 100)
    junk_answer = run_sync(online, "bundle", "import", str(junk))
    assert junk_answer.returncode == 6 and "not a Sarhad bundle" in junk_answer.stderr
