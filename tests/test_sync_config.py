"""``sarhad-sync`` settings: TOML file, then SARHAD_SYNC_* variables, then flags; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_client.config import ConfigError, load_config, setting_docs
from sync_client.plan import map_projects, pack


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "sync.toml"
    toml.write_text('central_url = "https://file.example/"\ntoken = "from-file"\nchunk_bytes = 65536\n')
    config = load_config({}, environ={}, config_file=toml)
    assert (config.central_url, config.token, config.chunk_bytes) == (
        "https://file.example",
        "from-file",
        65536,
    )
    env = {
        "SARHAD_SYNC_TOKEN": "from-env",
        "SARHAD_SYNC_HUB_DATA_DIR": str(tmp_path),
        "SARHAD_SYNC_CONFIG": str(toml),
    }
    config = load_config({}, environ=env)
    assert config.token == "from-env" and config.hub_data_dir == tmp_path
    assert config.ledger_path == tmp_path / "sync-ledger.db"
    config = load_config({"token": "from-flag", "retries": 2}, environ=env)
    assert (
        config.token == "from-flag" and config.retries == 2 and config.central_url == "https://file.example"
    )


def test_bad_settings_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a number"):
        load_config({}, environ={"SARHAD_SYNC_RETRIES": "many"})
    bad = tmp_path / "bad.toml"
    bad.write_text("centrl_url = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config({}, environ={}, config_file=bad)
    bad.write_text("central_url = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, environ={}, config_file=bad)
    with pytest.raises(ConfigError, match="SARHAD_SYNC_TOKEN"):
        load_config({}, environ={}).require("token")
    assert all(doc for doc in setting_docs().values())


def test_plan_maps_projects_and_packs_within_a_chunk() -> None:
    central = [{"id": 4, "name": "Khorog"}, {"id": 9, "name": "Vanj"}]
    assert map_projects(["Khorog", "Vanj", "Other"], central) == {"Khorog": 4, "Vanj": 9}
    assert map_projects(["Hub project"], [{"id": 7, "name": "Central name"}]) == {"Hub project": 7}
    lines = [{"n": n, "xml": f"<data><v>{n}</v>" + "x" * (n % 50) * 40 + "</data>"} for n in range(3000)]
    batches = pack(lines, 8192)
    assert all(len(b.body) <= 8192 for b in batches)
    assert [b.start for b in batches] == sorted(b.start for b in batches)
    assert sum(b.count for b in batches) == 3000 and len(batches) > 3
