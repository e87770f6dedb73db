"""The hub's local record (SQLite) of what central confirmed, so that a restart continues where the last
run stopped. Every confirmation is committed (fsync) as soon as central's answer arrives; a run killed at
any moment loses at most the answer it was waiting for, and the next inventory asks central again."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS central (
    url TEXT PRIMARY KEY,
    hub_name TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    bundle_key TEXT,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS confirmed (
    central TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    xml_form_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    attachments TEXT NOT NULL,
    held_as TEXT NOT NULL,
    confirmed_at TEXT NOT NULL,
    PRIMARY KEY (central, project_id, xml_form_id, instance_id, sha256)
);
CREATE TABLE IF NOT EXISTS refused (
    central TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    xml_form_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (central, project_id, xml_form_id, instance_id, sha256)
);
CREATE TABLE IF NOT EXISTS blob_confirmed (
    central TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (central, sha256)
);
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY,
    central TEXT NOT NULL,
    command TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT,
    sent_items INTEGER NOT NULL DEFAULT 0,
    sent_bytes INTEGER NOT NULL DEFAULT 0,
    message TEXT
);
CREATE TABLE IF NOT EXISTS statement (
    central TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    verified INTEGER NOT NULL,
    matches_hub INTEGER NOT NULL,
    fetched_at TEXT NOT NULL
);
"""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def attachments_key(attachments: dict[str, str]) -> str:
    return json.dumps(sorted(attachments.items()), separators=(",", ":"))


@dataclass(frozen=True)
class Key:
    project_id: int
    xml_form_id: str
    instance_id: str
    sha256: str


class Ledger:
    def __init__(self, path: Path, central: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.central = central
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # Central's identity, pinned at first contact --------------------------------------------------------
    def pinned(self) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT hub_name, signing_key, bundle_key FROM central WHERE url = ?", (self.central,)
        ).fetchone()
        return None if row is None else {"hub": row[0], "signingKey": row[1], "bundleKey": row[2]}

    def pin(self, hub_name: str, signing_key: str, bundle_key: str | None) -> None:
        self.db.execute(
            "INSERT INTO central (url, hub_name, signing_key, bundle_key, first_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (url) DO UPDATE SET hub_name = excluded.hub_name, bundle_key = excluded.bundle_key",
            (self.central, hub_name, signing_key, bundle_key, now()),
        )

    # Confirmed submission versions ----------------------------------------------------------------------
    def confirmed(self) -> dict[Key, tuple[str, str]]:
        """Key → (attachments key, held_as) of everything central confirmed."""
        rows = self.db.execute(
            "SELECT project_id, xml_form_id, instance_id, sha256, attachments, held_as FROM confirmed "
            "WHERE central = ?",
            (self.central,),
        )
        return {Key(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows}

    def confirmed_times(self) -> dict[tuple[str, str, str], str]:
        """(formId, instanceID, sha256) → when central confirmed it (ISO 8601)."""
        rows = self.db.execute(
            "SELECT xml_form_id, instance_id, sha256, confirmed_at FROM confirmed WHERE central = ?",
            (self.central,),
        )
        return {(r[0], r[1], r[2]): r[3] for r in rows}

    def confirm(self, entries: Iterable[tuple[Key, dict[str, str], str]]) -> int:
        """Record (key, attachments, held_as) confirmations in one committed transaction."""
        stamp = now()
        rows = [
            (
                self.central,
                k.project_id,
                k.xml_form_id,
                k.instance_id,
                k.sha256,
                attachments_key(a),
                held,
                stamp,
            )
            for k, a, held in entries
        ]
        if not rows:
            return 0
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO confirmed VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
                "(central, project_id, xml_form_id, instance_id, sha256) DO UPDATE SET "
                "attachments = excluded.attachments, held_as = excluded.held_as, "
                "confirmed_at = excluded.confirmed_at",
                rows,
            )
            self.db.executemany(
                "DELETE FROM refused WHERE central = ? AND project_id = ? AND xml_form_id = ? "
                "AND instance_id = ? AND sha256 = ?",
                [r[:5] for r in rows],
            )
        return len(rows)

    def refuse(self, key: Key, message: str) -> None:
        self.db.execute(
            "INSERT INTO refused VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
            "(central, project_id, xml_form_id, instance_id, sha256) DO UPDATE SET "
            "message = excluded.message, at = excluded.at",
            (self.central, key.project_id, key.xml_form_id, key.instance_id, key.sha256, message, now()),
        )

    def refused(self) -> dict[Key, str]:
        rows = self.db.execute(
            "SELECT project_id, xml_form_id, instance_id, sha256, message FROM refused WHERE central = ?",
            (self.central,),
        )
        return {Key(r[0], r[1], r[2], r[3]): r[4] for r in rows}

    # Blobs ----------------------------------------------------------------------------------------------
    def blob_confirmed(self, sha256: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO blob_confirmed VALUES (?, ?)", (self.central, sha256))

    def blobs_confirmed(self) -> set[str]:
        rows = self.db.execute("SELECT sha256 FROM blob_confirmed WHERE central = ?", (self.central,))
        return {r[0] for r in rows}

    # Runs and statements --------------------------------------------------------------------------------
    def start_run(self, command: str) -> int:
        cur = self.db.execute(
            "INSERT INTO run (central, command, started_at) VALUES (?, ?, ?)", (self.central, command, now())
        )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, outcome: str, items: int, sent_bytes: int, message: str = "") -> None:
        self.db.execute(
            "UPDATE run SET finished_at = ?, outcome = ?, sent_items = ?, sent_bytes = ?, message = ? "
            "WHERE id = ?",
            (now(), outcome, items, sent_bytes, message, run_id),
        )

    def last_run(self, outcome: str | None = None) -> dict[str, Any] | None:
        query = (
            "SELECT started_at, finished_at, outcome, sent_items, sent_bytes, message FROM run "
            "WHERE central = ?"
        )
        args: list[Any] = [self.central]
        if outcome:
            query += " AND outcome = ?"
            args.append(outcome)
        row = self.db.execute(query + " ORDER BY id DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        keys = ("startedAt", "finishedAt", "outcome", "sentItems", "sentBytes", "message")
        return dict(zip(keys, row, strict=True))

    def save_statement(self, body: dict[str, Any], verified: bool, matches_hub: bool) -> None:
        self.db.execute(
            "INSERT INTO statement VALUES (?, ?, ?, ?, ?) ON CONFLICT (central) DO UPDATE SET "
            "body = excluded.body, verified = excluded.verified, matches_hub = excluded.matches_hub, "
            "fetched_at = excluded.fetched_at",
            (self.central, json.dumps(body), int(verified), int(matches_hub), now()),
        )

    def statement(self) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT body, verified, matches_hub, fetched_at FROM statement WHERE central = ?", (self.central,)
        ).fetchone()
        if row is None:
            return None
        return {
            "signed": json.loads(row[0]),
            "verified": bool(row[1]),
            "matchesHub": bool(row[2]),
            "fetchedAt": row[3],
        }
