"""Backups that restore: one encrypted file holding the database, the blob store and the keys.

- ``sealed.py``: the encrypted, authenticated container (scrypt + AES-256-GCM in chunks).
- ``create.py``: a consistent snapshot of a running server into that container.
- ``restore.py``: a backup back into an empty data folder and database.
- ``schedule.py``: backups on a timer inside ``sarhad serve``, keeping the last N.

Inside the container is a tar stream: ``manifest.json`` first, then ``database/…``, ``keys/…`` and
``blobs/<sha256>``.
"""

from __future__ import annotations

FORMAT = 1
MANIFEST = "manifest.json"
SUFFIX = ".sarhad-backup"
# Besides the secret key (kept from the settings in use, whether configured or generated), the files of
# the data folder a server needs to serve as it did: central's sync keys (hubs pin their public halves).
SECRET_KEY_FILE = "secret_key"
KEY_FILES = ("sync_signing_key.pem", "sync_bundle_key.pem")
LEDGER_FILE = "sync-ledger.db"  # a hub's record of what central confirmed (sarhad-sync)
