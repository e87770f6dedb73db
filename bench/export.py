"""Benchmark: export N submissions (a root row and a repeat of 2 rows each) to CSV zip and XLSX.

    .venv/bin/python bench/export.py [--count 100000] [--database sqlite|postgresql] [--formats csv.zip,xlsx]

SQLite uses a temporary file; PostgreSQL uses a fresh schema in ``$SARHAD_BENCH_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``), dropped afterwards. Rows are seeded in bulk with
direct inserts (this measures the export, not ingest). Each export runs in a child process that streams
the bytes to a file exactly as an HTTP download would (``stream_export``) and reports its time and peak
RSS (VmHWM). Targets: CSV zip of 100,000 in ≤ 10 s; peak RSS ≤ 150 MB whatever the size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORM = """
| settings |
| | form_id | version |
| | bench | 1 |
| survey |
| | type | name | label |
| | text | district | District |
| | select_one yn | reported | Reported? |
| | select_multiple kinds | kinds | Kinds |
| | integer | age | Age |
| | decimal | score | Score |
| | date | when | When |
| | geopoint | place | Place |
| | begin_group | details | Details |
| | text | note | Note |
| | integer | count | Count |
| | end_group | | |
| | begin_repeat | member | Member |
| | text | mname | Name |
| | integer | mage | Age |
| | select_one yn | present | Present |
| | end_repeat | | |
| choices |
| | list_name | name | label |
| | yn | yes | Yes |
| | yn | no | No |
| | kinds | theft | Theft |
| | kinds | violence | Violence |
| | kinds | bribe | Bribe |
"""
BATCH = 5000


def _xml(n: int, iid: str) -> str:
    return (
        f'<data id="bench" version="1"><district>District {n % 60}</district>'
        f"<reported>{'yes' if n % 2 else 'no'}</reported><kinds>theft violence</kinds>"
        f"<age>{18 + n % 60}</age><score>{n % 10}.5</score><when>2026-0{1 + n % 9}-15</when>"
        f"<place>38.{n % 1000:03d} 68.{n % 997:03d} 800 5</place>"
        f"<details><note>Something happened near the market, no. {n}</note><count>{n % 7}</count></details>"
        f"<member><mname>Member A{n}</mname><mage>{20 + n % 40}</mage><present>yes</present></member>"
        f"<member><mname>Member B{n}</mname><mage>{21 + n % 40}</mage><present>no</present></member>"
        f"<meta><instanceID>{iid}</instanceID></meta></data>"
    )


def seed(url: str, data_dir: Path, count: int) -> int:
    from sqlalchemy import insert, update

    from server import create_app, migrate
    from server.config import load_settings, settings
    from server.forms.publish import publish, source_from_xlsform
    from server.models import Project, Submission, SubmissionVersion

    migrate.upgrade(url)
    app = create_app(load_settings(overrides={"data_dir": data_dir, "database_url": url}, environ={}))
    database = app.extensions["sarhad.db"]
    source = source_from_xlsform(FORM.encode(), settings=settings(app), filename="bench.md")
    with app.app_context(), database.write() as w:
        project = Project(name="bench")
        w.session.add(project)
        w.session.flush()
        outcome = publish(w, project, source)
        form_id, version_id = outcome.form.id, outcome.version.id
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    with database.engine.begin() as conn:
        for start in range(1, count + 1, BATCH):
            ids = range(start, min(start + BATCH, count + 1))
            subs, versions = [], []
            for n in ids:
                iid = f"uuid:{uuid.UUID(int=n)}"
                xml = _xml(n, iid)
                subs.append({"id": n, "form_id": form_id, "instance_id": iid, "review_state": "received",
                             "created_at": now, "current_version_id": None})  # fmt: skip
                versions.append({
                    "id": n, "submission_id": n, "form_id": form_id, "form_version_id": version_id,
                    "instance_id": iid, "xml": xml, "sha256": hashlib.sha256(xml.encode()).hexdigest(),
                    "encrypted": False, "source": "device", "device_id": "collect:bench", "received_at": now,
                })  # fmt: skip
            conn.execute(insert(Submission), subs)
            conn.execute(insert(SubmissionVersion), versions)
        conn.execute(update(Submission).values(current_version_id=Submission.id))
    print(f"seeded {count} submissions in {time.monotonic() - started:.1f} s", flush=True)
    return form_id


def child(url: str, data_dir: str, form_id: int, fmt: str, out: str) -> None:
    """Runs in its own process: one export, streamed to ``out``; prints seconds and VmHWM as JSON."""
    from server import create_app
    from server.config import load_settings
    from server.datasets.export import find_format, stream_export
    from server.datasets.redact import RAW_OPERATOR
    from server.datasets.tables import ExportOptions

    app = create_app(load_settings(overrides={"data_dir": data_dir, "database_url": url}, environ={}))
    database = app.extensions["sarhad.db"]
    if fmt == "central":  # ODK Central's layout (text as sent, no cleaning), as GET .../submissions.csv.zip
        fmt, opts = (
            "csv.zip",
            ExportOptions(access=RAW_OPERATOR, attachments=False, clean=False, merged=False),
        )
    else:
        opts = ExportOptions(access=RAW_OPERATOR, attachments=False)
    started_hwm = _vm("VmHWM")
    # Start the peak from here: importing the app peaks briefly (argon2 hashes a dummy password with
    # 64 MiB at import), which is not the export's memory. Both figures are printed.
    reset = _reset_peak()
    started = time.monotonic()
    cpu_started = _cpu_seconds()
    size = 0
    with app.app_context(), open(out, "wb") as fh:
        for chunk in stream_export(database, form_id, find_format(fmt), opts):
            fh.write(chunk)
            size += len(chunk)
    seconds = time.monotonic() - started
    figures = {"seconds": seconds, "peak_rss_mb": _vm("VmHWM") / 1024, "bytes": size}
    # CPU time of this process: what the export costs when the machine is shared (the wall time then
    # includes waiting for the CPU). The database server's own work is not in it (PostgreSQL).
    figures["cpu_seconds"] = _cpu_seconds() - cpu_started
    figures["startup_peak_mb"] = started_hwm / 1024
    figures["peak_is_export_only"] = reset
    print(json.dumps(figures))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _vm(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--formats", default="csv.zip,xlsx", help="csv.zip, xlsx, jsonl, geojson, central")
    parser.add_argument("--child", nargs=5, metavar=("URL", "DATA_DIR", "FORM_ID", "FORMAT", "OUT"))
    args = parser.parse_args()
    if args.child:
        url, data_dir, form_id, fmt, out = args.child
        child(url, data_dir, int(form_id), fmt, out)
        return
    workdir = Path(tempfile.mkdtemp(prefix="sarhad-bench-export-"))
    schema = None
    if args.database == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        from sqlalchemy import create_engine, text

        base = os.environ.get(
            "SARHAD_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with create_engine(base).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    try:
        form_id = seed(url, workdir, args.count)
        for fmt in args.formats.split(","):
            out = workdir / f"export.{fmt}"
            result = subprocess.run(
                [sys.executable, __file__, "--child", url, str(workdir), str(form_id), fmt, str(out)],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )  # fmt: skip
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"{args.database:10} {fmt:8} {args.count:>7} submissions: {figures['seconds']:6.2f} s "
                f"(CPU {figures['cpu_seconds']:.2f} s), "
                f"peak RSS {figures['peak_rss_mb']:6.1f} MB"
                f"{'' if figures['peak_is_export_only'] else ' (incl. start-up)'}"
                f" (start-up peak {figures['startup_peak_mb']:.0f} MB),"
                f" {figures['bytes'] / 1e6:6.1f} MB written",
                flush=True,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if schema:
            from sqlalchemy import create_engine, text

            with create_engine(base).begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
