"""Settings: defaults, then the TOML file, then SARHAD_* variables; bad values are plain errors."""

import re
from pathlib import Path

import pytest

from server.config import Settings, load_settings


def test_defaults_keep_everything_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(environ={"SARHAD_DATA_DIR": str(tmp_path)})
    assert settings.data_dir == tmp_path
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'sarhad.db'}"
    assert settings.blob_dir == tmp_path / "blobs"
    assert settings.max_request_bytes == Settings.max_request_bytes


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "sarhad.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\nbase_url = "https://file.example"\nmax_request_bytes = 1000\n'
        'digest_realm = "FromFile"\n'
    )
    settings = load_settings(
        environ={"SARHAD_CONFIG": str(config), "SARHAD_BASE_URL": "https://env.example"},
        overrides={"digest_realm": "FromOverride"},
    )
    assert settings.base_url == "https://env.example"  # environment beats the file
    assert settings.max_request_bytes == 1000  # the file beats the default, typed
    assert settings.digest_realm == "FromOverride"


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_settings(environ={"SARHAD_DATA_DIR": str(tmp_path)}).secret_key
    second = load_settings(environ={"SARHAD_DATA_DIR": str(tmp_path)}).secret_key
    assert first == second and len(first) >= 48
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    given = load_settings(environ={"SARHAD_DATA_DIR": str(tmp_path), "SARHAD_SECRET_KEY": "x" * 40})
    assert given.secret_key == "x" * 40


def test_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_request_bytes"):
        load_settings(environ={"SARHAD_DATA_DIR": str(tmp_path), "SARHAD_MAX_REQUEST_BYTES": "lots"})
    config = tmp_path / "bad.toml"
    config.write_text('databse_url = "sqlite://"\n')
    with pytest.raises(ValueError, match="databse_url"):
        load_settings(environ={"SARHAD_DATA_DIR": str(tmp_path)}, config_file=config)
    with pytest.raises(ValueError, match="report_min_cell must be at least 2"):
        load_settings(environ={"SARHAD_DATA_DIR": str(tmp_path), "SARHAD_REPORT_MIN_CELL": "1"})


def test_one_accessor_reads_settings_at_run_time() -> None:
    """``server.config.settings()`` is the only way code reads the running app's settings: a second
    way (``app.config["SARHAD"]``, Flask's ``MAX_CONTENT_LENGTH``) could drift from it."""
    root = Path(__file__).resolve().parent.parent
    accessor = root / "server" / "config.py"
    pattern = re.compile(r"""config\[\s*["'](SARHAD|MAX_CONTENT_LENGTH)["']\s*\]|settings_of\(""")
    offences = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for folder in ("server", "sync_client", "tests", "bench")
        for path in sorted((root / folder).rglob("*.py"))
        if path not in (accessor, Path(__file__).resolve())
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offences == [], "\n".join(offences)
