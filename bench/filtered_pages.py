"""Time of a filtered page of the submissions table at 100,000 submissions, with the query plan of each
filter, on SQLite or PostgreSQL.

    .venv/bin/python bench/filtered_pages.py [--count 100000] [--database-url postgresql+psycopg://...]

Starts a server on a fresh store (SQLite in a temporary folder unless --database-url names a PostgreSQL
database; a schema of its own is made and dropped there), writes the submissions straight into the
tables as tests/test_console_paging.py does (region, district, device and review state spread over
them), signs in and times the first page and a page deep in the list (a cursor 1,000 rows from the end)
for each filter, best of three. Then prints the database's plan for each filtered query: every one should
read an index of submission in order (no sort of all the form's rows).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.orm import aliased  # noqa: E402
from werkzeug.datastructures import MultiDict  # noqa: E402

from server import migrate  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.models import Form, Submission, SubmissionVersion  # noqa: E402
from tests.conftest import serve_in_thread  # noqa: E402
from tests.console_support import Browser, add_project, add_user  # noqa: E402
from tests.test_console_paging import seed  # noqa: E402


def _best(browser: Browser, path: str) -> float:
    times = []
    for _ in range(3):
        began = time.perf_counter()
        assert browser.get(path).status_code == 200
        times.append(time.perf_counter() - began)
    return min(times)


def _plan(database, form_id: int, query: dict[str, str]) -> list[str]:  # type: ignore[no-untyped-def]
    from server.console.submissions import Cursor, Filters, filtered

    current = aliased(SubmissionVersion)
    stmt = filtered(
        select(Submission, current).join(current, current.id == Submission.current_version_id),
        form_id,
        Filters.read(MultiDict(query)),
        Cursor.decode(query.get("after")),
    ).limit(51)
    with database.read() as session:
        dialect = session.get_bind().dialect
        sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "
        return [" ".join(str(c) for c in row) for row in session.execute(text(prefix + sql))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, object] = {"data_dir": tmp, "log_level": "WARNING"}
        schema = None
        if args.database_url:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            with create_engine(args.database_url).begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            sep = "&" if "?" in args.database_url else "?"
            overrides["database_url"] = f"{args.database_url}{sep}options=-csearch_path%3D{schema}"
        settings = load_settings(overrides=overrides, environ={})
        migrate.upgrade(settings.sqlalchemy_url)
        from server import create_app

        app = create_app(settings)
        live, stop = serve_in_thread(app)
        try:
            database = live.database
            project_id = add_project(database, "Bench")
            add_user(database, "bench@example.tj", "admin", project_id)
            devices = seed(live, project_id, args.count)
            with database.read() as session:
                form_id = session.scalar(select(Form.id).where(Form.project_id == project_id))
                newest = session.scalar(
                    select(Submission.created_at)
                    .where(Submission.form_id == form_id)
                    .order_by(Submission.created_at)
                    .offset(1000)
                    .limit(1)
                )
            browser = Browser.open(live.url)
            browser.sign_in("bench@example.tj")
            path = f"/projects/{project_id}/forms/safety/submissions"
            deep = f"{newest.timestamp():.6f}_0"
            cases = {
                "no filter": {},
                "date range": {"from": "2026-01-15", "to": "2026-02-20"},
                "region": {"region": "gbao"},
                "district": {"district": "khorog"},
                "review state": {"review": "approved"},
                "device": {"device": str(devices[3])},
                "has issues": {"issues": "1"},
                "district + review": {"district": "rushan", "review": "approved"},
            }
            kind = settings.sqlalchemy_url.split(":", 1)[0]
            print(f"{args.count:,} submissions on {kind}: best of 3, first page / deep page (seconds)")
            for name, query in cases.items():
                qs = "&".join(f"{k}={v}" for k, v in query.items())
                first = _best(browser, f"{path}?{qs}")
                deeper = _best(browser, f"{path}?{qs}&after={deep}")
                print(f"  {name:20} {first:.3f} / {deeper:.3f}")
            print("query plans (deep page):")
            for name, query in cases.items():
                print(f"  {name}:")
                for line in _plan(database, form_id, {**query, "after": deep}):
                    print(f"      {line}")
        finally:
            stop()
            if schema:
                with create_engine(args.database_url).begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
