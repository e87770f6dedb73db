"""Settings: built-in defaults, then an optional TOML file, then ``SARHAD_*`` environment variables.

Every setting is a field of :class:`Settings` with its documentation in the field's metadata; the README
lists them all and ``tests/test_docs.py`` fails when one is missing there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

ENV_PREFIX = "SARHAD_"
CONFIG_FILE_ENV = "SARHAD_CONFIG"
APP_CONFIG_KEY = "SARHAD"  # where create_app keeps the Settings in app.config


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(
        Path("./var"), "Folder for the SQLite database, the blob store and generated keys."
    )
    database_url: str = _setting(
        "",
        "SQLAlchemy URL of the database. Empty means SQLite at DATA_DIR/sarhad.db. For PostgreSQL: "
        "postgresql+psycopg://user:password@host:5432/dbname.",
    )
    secret_key: str = _setting(
        "",
        "Secret used to sign Digest nonces and other server-side tokens. Empty means generate one "
        "and keep it in DATA_DIR/secret_key. Every web server of one central must share it.",
    )
    base_url: str = _setting(
        "",
        "Public URL of this server (e.g. https://sarhad.example.org), used in links handed to "
        "devices: form list download URLs and QR codes. Empty means the URL of each request.",
    )
    max_request_bytes: int = _setting(
        256 * 1024 * 1024,
        "Largest request body accepted, in bytes. Advertised to Collect as "
        "X-OpenRosa-Accept-Content-Length so that it splits larger submissions.",
    )
    max_xml_bytes: int = _setting(
        10 * 1024 * 1024, "Largest submission or form XML document accepted, in bytes."
    )
    digest_realm: str = _setting(
        "Sarhad",
        "Realm of HTTP Digest authentication for devices with a username and password. Changing it "
        "invalidates every stored device password.",
    )
    trusted_proxies: int = _setting(
        0,
        "How many reverse proxies in front of the server set X-Forwarded-For/-Proto/-Host. "
        "Set to 1 behind one nginx or Caddy doing HTTPS, so that the server knows it is on HTTPS.",
    )
    session_ttl_hours: int = _setting(24, "Lifetime of a web user's bearer session token.")
    conversion_timeout_seconds: int = _setting(
        120, "Longest time an XLSForm conversion may take before it is refused."
    )
    log_level: str = _setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.")
    serve_threads: int = _setting(
        8,
        "Worker threads of sarhad serve (waitress). Requests reach a thread only once they have fully "
        "arrived, so slow clients do not take threads.",
    )
    serve_connection_limit: int = _setting(
        200, "Most connections sarhad serve keeps open at once; more wait in the listen queue."
    )
    serve_channel_timeout_seconds: int = _setting(
        30,
        "sarhad serve closes a connection that has sent nothing for this long; a request whose body "
        "stalled is dropped unread, nothing of it is stored.",
    )
    sync_chunk_idle_seconds: int = _setting(
        60,
        "Under gunicorn (the centre), a sync chunk whose bytes stop coming for this long is ended and "
        "what arrived is kept; the hub continues from there. A dead link then holds no worker thread.",
    )
    sqlite_wal_limit_mb: int = _setting(
        32,
        "SQLite only: when the write-ahead log (sarhad.db-wal) grows past this size, the next write "
        "checkpoints it into the database and truncates it; the file is also cut back to this size "
        "after every complete checkpoint.",
    )
    report_min_cell: int = _setting(
        5,
        "Smallest count a donor report shows (k). Counts from 1 to k-1 are hidden, and so are the counts "
        "that would let them be worked out from the totals. A report may ask for a larger k, never a "
        "smaller one. At least 2.",
    )
    backup_dir: str = _setting(
        "",
        "Folder where `sarhad serve` writes scheduled backups (e.g. a folder on a USB disk). Empty means "
        "no scheduled backups. When the folder is missing (the disk is not plugged in) a run is skipped "
        "and logged.",
    )
    backup_passphrase_file: str = _setting(
        "",
        "File holding the passphrase of scheduled backups (its first line). Needed with BACKUP_DIR.",
    )
    backup_interval_hours: int = _setting(24, "Hours between scheduled backups.")
    backup_keep: int = _setting(
        7, "How many scheduled backups to keep in BACKUP_DIR; older ones are deleted."
    )

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'sarhad.db').resolve()}"


def settings(app: Flask | None = None) -> Settings:
    """The one way to read settings at run time: those of ``app``, or without it of the application
    handling the current request or command (``create_app`` put them there)."""
    if app is None:
        from flask import current_app

        app = current_app
    return app.config[APP_CONFIG_KEY]  # type: ignore[no-any-return]


def setting_docs() -> dict[str, str]:
    """Environment variable name → documentation, for every setting."""
    return {ENV_PREFIX + f.name.upper(): f.metadata["doc"] for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    if kind in (int, "int"):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"setting {name} must be a whole number, got {raw!r}") from None
    if kind in (Path, "Path"):
        return Path(raw)
    return str(raw)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Defaults → TOML file (``config_file`` or $SARHAD_CONFIG) → environment → ``overrides``."""
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}

    path = config_file or environ.get(CONFIG_FILE_ENV)
    if path:
        with open(path, "rb") as fh:
            from_file = tomllib.load(fh)
        unknown = set(from_file) - set(fields)
        if unknown:
            raise ValueError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
        values.update(from_file)
    for name in fields:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = environ[env_name]
    values.update(overrides or {})

    typed = {name: _coerce(name, raw, fields[name].type) for name, raw in values.items()}
    settings = Settings(**typed)
    if settings.report_min_cell < 2:
        raise ValueError(f"setting report_min_cell must be at least 2, got {settings.report_min_cell}")
    if settings.backup_keep < 1 or settings.backup_interval_hours < 1:
        raise ValueError("settings backup_keep and backup_interval_hours must be at least 1")
    if not settings.secret_key:
        settings = dataclasses.replace(settings, secret_key=_stored_secret(settings.data_dir))
    return settings


def _stored_secret(data_dir: Path) -> str:
    """The secret kept in the data dir, created on first use (readable by the owner only)."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
            fh.flush()
            os.fsync(fh.fileno())
        # link() refuses to replace, so when two workers start at once both read the winner's key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
    return path.read_text().strip()
