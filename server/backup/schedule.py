"""Backups on a timer inside ``sarhad serve`` (a field hub), keeping the last ``BACKUP_KEEP``.

The folder should be one *on the backup disk itself* (``/media/usb/sarhad-backups``, not the mount
point): when the disk is not plugged in the folder is missing and the run is skipped, instead of filling
the hub's own SD card under an empty mount point.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask

from server.backup import SUFFIX
from server.backup.create import create_and_record
from server.config import Settings, settings
from server.db import Database

log = logging.getLogger(__name__)
_PREFIX = "sarhad-"


def read_passphrase_file(path: Path) -> bytes:
    """The first line of the file, without its line end."""
    passphrase = path.read_bytes().splitlines()[0] if path.stat().st_size else b""
    if not passphrase:
        raise ValueError(f"the passphrase file {path} is empty")
    return passphrase


def start(app: Flask) -> BackgroundScheduler | None:
    """Schedule backups when BACKUP_DIR is set; fail at once (not at the first run) when the
    passphrase file cannot be read."""
    config = settings(app)
    if not config.backup_dir:
        return None
    if not config.backup_passphrase_file:
        raise ValueError("backup_dir is set but backup_passphrase_file is not")
    read_passphrase_file(Path(config.backup_passphrase_file))
    interval = dt.timedelta(hours=config.backup_interval_hours)
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        run_once,
        IntervalTrigger(hours=config.backup_interval_hours),
        args=[app.extensions["sarhad.db"], config],
        max_instances=1,
        coalesce=True,
        # A hub laptop may run a few hours a day: the first backup is due one interval after the
        # newest one in the folder, and a minute after start when that has passed already.
        next_run_time=_first_run(Path(config.backup_dir), interval),
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler.start()
    return scheduler


def _first_run(folder: Path, interval: dt.timedelta) -> dt.datetime:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    newest = backups_in(folder)[-1:] if folder.is_dir() else []
    if not newest:
        return soon
    due = dt.datetime.fromtimestamp(newest[0].stat().st_mtime, dt.UTC) + interval
    return max(due, soon)


def backups_in(folder: Path) -> list[Path]:
    """Scheduled backups in the folder, oldest first (their names sort by time)."""
    return sorted(folder.glob(f"{_PREFIX}*{SUFFIX}"))


def run_once(database: Database, config: Settings) -> Path | None:
    """One scheduled backup, then delete all but the newest BACKUP_KEEP. None when skipped."""
    folder = Path(config.backup_dir)
    if not folder.is_dir():
        log.warning("backup skipped: the folder %s is missing (is the backup disk plugged in?)", folder)
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    output = folder / f"{_PREFIX}{stamp}{SUFFIX}"
    try:
        passphrase = read_passphrase_file(Path(config.backup_passphrase_file))
        summary = create_and_record(database, config, output, passphrase)
    except Exception:
        log.exception("backup to %s failed", output)
        return None
    for old in backups_in(folder)[: -config.backup_keep]:
        old.unlink(missing_ok=True)
    log.info("backup written: %s (%d bytes, %d files)", output, summary.size, summary.blobs)
    return output
