"""Benchmark: the cost of decrypting in an export. N encrypted submissions (each with a photo) are stored
as Collect sends them, then exported as Central's CSV zip without the passphrase ("not decrypted") and
with it (decrypted in memory on the way out); also the time to turn encryption on and to unlock the key.

    .venv/bin/python bench/decrypt.py [--count 2000] [--photo-bytes 20000]

Runs in process on a temporary SQLite store. Prints seconds and submissions per second.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--photo-bytes", type=int, default=20_000)
    args = parser.parse_args()

    from server import create_app, migrate
    from server.config import load_settings, settings
    from server.datasets import Filters
    from server.datasets.export import find_format, stream_export
    from server.datasets.redact import RAW_OPERATOR
    from server.datasets.tables import ExportOptions
    from server.forms.publish import publish, source_from_xform
    from server.ingest import ingest
    from server.models import Form, Project, ProjectKey
    from server.project_keys import enable_managed_encryption, unlock
    from server.projects import create_project
    from tests.collect_emulator import Instance, encrypt, read_form
    from tests.test_sync_support import FORM_ID, form_xml, instance_xml

    passphrase = "a bench passphrase"
    with tempfile.TemporaryDirectory(prefix="sarhad-bench-decrypt-") as folder:
        url = f"sqlite:///{folder}/sarhad.db"
        migrate.upgrade(url)
        app = create_app(load_settings(overrides={"data_dir": folder, "database_url": url}, environ={}))
        database = app.extensions["sarhad.db"]
        with app.app_context(), database.write() as w:
            project = create_project(w.session, "Bench")
            publish(w, project, source_from_xform(form_xml(), settings(app)))
            started = time.perf_counter()
            key = enable_managed_encryption(w.session, project, passphrase, None, None, via="bench")
            took = time.perf_counter() - started
            print(f"turn encryption on (RSA-2048 key, lock, republish 1 form): {took:.2f} s")
            project_id, key_id = project.id, key.id
            xml = w.session.get(Form, project.forms[0].id).current_version.xml  # type: ignore[union-attr]
        model = read_form(xml.encode())
        started = time.perf_counter()
        with app.app_context():
            for n in range(args.count):
                iid = f"uuid:00000000-0000-4000-8000-{n:012d}"
                plain = instance_xml(iid, f"village {n}", f"p{n}.jpg", version=model.version)
                sent = encrypt(
                    model, Instance(FORM_ID, iid, plain, {f"p{n}.jpg": os.urandom(args.photo_bytes)})
                )
                with database.write() as w:
                    ingest(
                        w,
                        project=project_id,
                        xml_bytes=sent.xml,
                        attachments=[(k, io.BytesIO(v)) for k, v in sent.files.items()],
                    )
        print(f"stored {args.count} encrypted submissions in {time.perf_counter() - started:.1f} s")
        with database.read() as session:
            stored_key = session.get(ProjectKey, key_id)
            started = time.perf_counter()
            private = unlock(stored_key, passphrase)  # type: ignore[arg-type]
            print(
                f"unlock the key (PBKDF2-SHA256, 600,000 iterations): {time.perf_counter() - started:.2f} s"
            )
            public = stored_key.public  # type: ignore[union-attr]
            form_pk = session.get(Project, project_id).forms[0].id  # type: ignore[union-attr]
        opts = ExportOptions(access=RAW_OPERATOR, filters=Filters(), clean=False, attachments=True)
        with app.app_context():
            for label, keys in (("without the passphrase", None), ("decrypting", {public: private})):
                started = time.perf_counter()
                size = sum(
                    len(c) for c in stream_export(database, form_pk, find_format("csv.zip"), opts, keys)
                )
                took = time.perf_counter() - started
                print(
                    f"CSV zip {label}: {took:.2f} s, {args.count / took:,.0f} submissions/s, {size:,} bytes"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
