"""Benchmark: what entities cost ingest, in process on a fresh SQLite store.

    .venv/bin/python bench/entities.py [--count 1000]

Publishes three small forms (one without entities, one creating an entity per submission, one updating
it, and the update form's ``concerns.csv`` served from the list) and ingests ``--count`` submissions of
each through the one ingest path, one write transaction each (as the API does). Prints submissions per
second for each and the time to build the list's CSV for the manifest at that size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from server import create_app, migrate  # noqa: E402
from server.config import load_settings, settings  # noqa: E402
from server.entities.attachment import list_file  # noqa: E402
from server.forms import publish, source_from_xform  # noqa: E402
from server.ingest import ingest  # noqa: E402
from server.models import EntityList  # noqa: E402
from server.projects import create_project  # noqa: E402

HEAD = (
    '<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml" '
    'xmlns:jr="http://openrosa.org/javarosa" xmlns:entities="http://www.opendatakit.org/xforms/entities">'
    '<h:head><h:title>{id}</h:title><model entities:entities-version="2024.1.0"><instance>'
)
PLAIN = HEAD + (
    '<data id="plain" version="1"><district/><status/><meta><instanceID/></meta></data></instance>'
    '<bind nodeset="/data/district" type="string"/><bind nodeset="/data/status" type="string"/>'
    "</model></h:head><h:body/></h:html>"
)
CREATE = HEAD + (
    '<data id="create" version="1"><district/><status/><meta><entity dataset="concerns" create="1" id="">'
    "<label/></entity><instanceID/></meta></data></instance>"
    '<bind nodeset="/data/district" type="string" entities:saveto="district"/>'
    '<bind nodeset="/data/status" type="string" entities:saveto="status"/>'
    "</model></h:head><h:body/></h:html>"
)
UPDATE = HEAD + (
    '<data id="update" version="1"><concern/><status/><meta><entity dataset="concerns" update="1" '
    'baseVersion="" trunkVersion="" branchId="" id=""/><instanceID/></meta></data></instance>'
    '<instance id="concerns" src="jr://file-csv/concerns.csv"/>'
    '<bind nodeset="/data/status" type="string" entities:saveto="status"/>'
    "</model></h:head><h:body/></h:html>"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    count = parser.parse_args().count
    with tempfile.TemporaryDirectory(prefix="sarhad-bench-entities-") as folder:
        url = f"sqlite:///{folder}/sarhad.db"
        migrate.upgrade(url)
        app = create_app(
            load_settings(
                overrides={"data_dir": Path(folder), "database_url": url, "log_level": "WARNING"}, environ={}
            )
        )
        database = app.extensions["sarhad.db"]
        with app.app_context(), database.write() as w:
            project = create_project(w.session, "Bench")
            for xml in (PLAIN, CREATE, UPDATE):
                form_id = xml.split('<data id="')[1].split('"')[0]
                publish(w, project, source_from_xform(xml.replace("{id}", form_id).encode(), settings(app)))
            project_id = project.id

        uuids = [str(uuid.uuid4()) for _ in range(count)]

        def body(form_id: str, inner: str) -> bytes:
            return (
                f'<data id="{form_id}" version="1">{inner}<meta><instanceID>uuid:{uuid.uuid4()}</instanceID>'
                "</meta></data>"
            ).encode()

        runs = {
            "no entities": [body("plain", "<district>panj</district><status>open</status>") for _ in uuids],
            "creates an entity": [
                body(
                    "create",
                    f"<district>panj</district><status>open</status>"
                    f'<meta><entity dataset="concerns" create="1" id="{u}"><label>panj</label>'
                    "</entity></meta>",
                )
                for u in uuids
            ],
            "updates an entity": [
                body(
                    "update",
                    f"<concern>{u}</concern><status>resolved</status>"
                    f'<meta><entity dataset="concerns" update="1" baseVersion="1" trunkVersion="1" '
                    f'branchId="{uuid.uuid4()}" id="{u}"/></meta>',
                )
                for u in uuids
            ],
        }
        for name, bodies in runs.items():
            start = time.perf_counter()
            for xml in bodies:
                with app.app_context(), database.write() as w:
                    ingest(w, project=project_id, xml_bytes=xml)
            spent = time.perf_counter() - start
            print(f"{name:>20}: {count / spent:8.0f} submissions/s ({1000 * spent / count:.2f} ms each)")
        with database.read() as session:
            entity_list = session.scalar(select(EntityList).where(EntityList.name == "concerns"))
            assert entity_list is not None
            start = time.perf_counter()
            made = list_file(session, entity_list.id)
            spent = time.perf_counter() - start
        print(f"concerns.csv of {count} entities: {made.size} bytes, made in {1000 * spent:.1f} ms")


if __name__ == "__main__":
    main()
