"""``sarhad-sync watch``: keep a hub in step with central without anyone at the keyboard.

Every ``interval_minutes`` (with jitter) it checks whether central answers; when it does, it runs a push
and then pull-forms, each as a child ``sarhad-sync`` process (a stop or a crash never leaves half a run in
this process; the ledger makes the next run continue). While central is unreachable, checks back off
exponentially (with jitter) up to an hour. APScheduler runs one sync at a time (``max_instances=1``)
and merges runs missed while one was going or while the machine slept (``coalesce``). Ctrl-C or SIGTERM
stops the child, then the scheduler, cleanly.

One run at a time holds across processes too: a watch holds an exclusive lock on
``HUB_DATA_DIR/sync-watch.lock`` (``filelock``: fcntl on Linux, msvcrt on Windows; the system drops it
when the process dies, however it dies), and a second watch for the same hub exits at once with
:attr:`ExitCode.BUSY`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import filelock
import requests
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from sync_client.client import ExitCode, SyncError
from sync_client.config import ENV_PREFIX, SyncConfig

log = logging.getLogger("sarhad-sync.watch")
MAX_BACKOFF_SECONDS = 3600.0
LOCK_FILE = "sync-watch.lock"


def child_env(config: SyncConfig) -> dict[str, str]:
    """The settings as SARHAD_SYNC_* variables, so that flags given to watch reach its children."""
    import os

    env = dict(os.environ)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value not in (None, ""):
            env[ENV_PREFIX + f.name.upper()] = str(value)
    return env


class Watcher:
    def __init__(self, config: SyncConfig, pull_forms: bool, echo: Any) -> None:
        self.config = config
        self.pull_forms = pull_forms
        self.echo = echo
        self.failures = 0
        self.not_before = 0.0
        self.child: subprocess.Popen[str] | None = None
        self.stopping = threading.Event()
        self.exit_code = ExitCode.OK
        self.scheduler = BlockingScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )

    def reachable(self) -> bool:
        try:
            return requests.get(self.config.central_url + "/v1/health", timeout=(10, 30)).status_code < 500
        except requests.RequestException:
            return False

    def _back_off(self, why: str) -> None:
        self.failures += 1
        cap = min(MAX_BACKOFF_SECONDS, self.config.backoff_seconds * 30 * 2 ** (self.failures - 1))
        wait = random.uniform(cap / 2, cap)
        self.not_before = time.monotonic() + wait
        self.echo(f"{why}; next attempt in about {wait:.0f} s")

    def _run(self, *args: str) -> int:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "sync_client.cli", *args],
            env=child_env(self.config),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output, _ = self.child.communicate()
        code = self.child.returncode
        self.child = None
        for line in output.strip().splitlines():
            self.echo(f"  {line}")
        return code

    def tick(self) -> None:
        if self.stopping.is_set() or time.monotonic() < self.not_before:
            return
        if not self.reachable():
            self._back_off(f"central at {self.config.central_url} is not reachable")
            return
        self.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S')} central is reachable: syncing")
        code = self._run("push", "--quiet")
        if code == ExitCode.OK and self.pull_forms and not self.stopping.is_set():
            code = self._run("pull-forms")
        if self.stopping.is_set():
            return
        if code == ExitCode.REFUSED_TOKEN:
            self.echo("central refused the hub's token: stopping (ask the administrator to re-issue it)")
            self.exit_code = code
            self.stop()
        elif code == ExitCode.UNREACHABLE:
            self._back_off("the link dropped during the sync")
        else:
            self.failures = 0
            self.not_before = 0.0

    def stop(self, *_: object) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)  # the child stops between requests; the ledger keeps its place
        threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": False}, daemon=True).start()

    def run(self) -> int:
        interval = max(1.0, self.config.interval_minutes * 60)
        self.scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=interval, jitter=max(1, int(interval / 10))),
            next_run_time=dt.datetime.now().astimezone(),
            id="sync",
        )
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        self.echo(f"watching: every {interval:.0f} s, syncing with {self.config.central_url}; Ctrl-C stops")
        try:
            self.scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            self.stop()
        child = self.child
        if child is not None:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        self.echo("stopped; the next run continues where this one stopped")
        return self.exit_code


def watch(config: SyncConfig, pull_forms: bool, echo: Any) -> int:
    config.require("central_url", "token", "hub_data_dir")
    assert config.hub_data_dir is not None
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("filelock").setLevel(logging.WARNING)
    lock = filelock.FileLock(config.hub_data_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise SyncError(
            f"another sarhad-sync watch already runs for the hub in {config.hub_data_dir} (it holds "
            f"{lock.lock_file}); this one stops. Let that one work, or stop it first (Ctrl-C).",
            ExitCode.BUSY,
        ) from None
    try:
        return Watcher(config, pull_forms, echo).run()
    finally:
        lock.release()
