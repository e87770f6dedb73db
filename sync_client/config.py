"""``sarhad-sync`` settings: built-in defaults, then a TOML file, then ``SARHAD_SYNC_*`` variables, then
command-line flags (each layer overrides the one before)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "SARHAD_SYNC_"
CONFIG_FILE_ENV = "SARHAD_SYNC_CONFIG"


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to set it."""


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class SyncConfig:
    central_url: str = _setting("", "URL of the central Sarhad server, e.g. https://sarhad.example.org.")
    token: str = _setting("", "The hub token central's administrator issued (`sarhad hub create`).")
    hub_data_dir: Path | None = _setting(None, "The hub's data folder (its SARHAD_DATA_DIR).")
    hub_database_url: str = _setting(
        "", "The hub's database URL when it is not SQLite in the data folder (its SARHAD_DATABASE_URL)."
    )
    ledger: Path | None = _setting(
        None, "The local record of what central confirmed. Default: HUB_DATA_DIR/sync-ledger.db."
    )
    chunk_bytes: int = _setting(
        256 * 1024, "Largest request body: a cut link re-sends at most this much. Batches and blob chunks."
    )
    connect_timeout: float = _setting(15.0, "Seconds to wait for a connection to central.")
    read_timeout: float = _setting(120.0, "Seconds to wait for central's answer.")
    retries: int = _setting(8, "How many times a failed request is tried again (with growing waits).")
    backoff_seconds: float = _setting(
        1.0, "Unit of the waits between retries: the n-th waits this x 2^(n-1), plus up to this at random."
    )
    backoff_max_seconds: float = _setting(60.0, "Longest wait between retries.")
    interval_minutes: float = _setting(5.0, "`watch`: minutes between checks for a link to central.")
    central_bundle_key: str = _setting(
        "", "Central's bundle key (printed by `sarhad hub create`), for hubs that never reach central."
    )
    central_signing_key: str = _setting(
        "", "Central's signing key (printed by `sarhad hub create`), to check receipts and statements."
    )

    @property
    def ledger_path(self) -> Path:
        if self.ledger is not None:
            return self.ledger
        if self.hub_data_dir is None:
            raise ConfigError("Say where the hub's data is (--hub-data-dir or SARHAD_SYNC_HUB_DATA_DIR).")
        return self.hub_data_dir / "sync-ledger.db"

    def require(self, *names: str) -> SyncConfig:
        for name in names:
            if not getattr(self, name):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{name.replace('_', ' ')} is not set: give {flag}, set {ENV_PREFIX}{name.upper()}, "
                    f"or put {name} = ... in the config file."
                )
        return self


def setting_docs() -> dict[str, str]:
    return {ENV_PREFIX + f.name.upper(): f.metadata["doc"] for f in dataclasses.fields(SyncConfig)}


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    if raw is None or raw == "":
        return None if "None" in str(kind) else raw
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name} must be a number, got {raw!r}") from None
    if "Path" in str(kind):
        return Path(raw).expanduser()
    return str(raw)


def load_config(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> SyncConfig:
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(SyncConfig)}
    values: dict[str, Any] = {}
    path = config_file or environ.get(CONFIG_FILE_ENV)
    if path:
        try:
            with open(path, "rb") as fh:
                from_file = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
        unknown = set(from_file) - set(fields)
        if unknown:
            raise ConfigError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
        values.update(from_file)
    for name in fields:
        if ENV_PREFIX + name.upper() in environ:
            values[name] = environ[ENV_PREFIX + name.upper()]
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    typed = {name: _coerce(name, raw, fields[name].type) for name, raw in values.items()}
    config = SyncConfig(**typed)
    if config.chunk_bytes < 4096:
        raise ConfigError("chunk_bytes must be at least 4096")
    return dataclasses.replace(config, central_url=config.central_url.rstrip("/"))
