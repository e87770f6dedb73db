"""Benchmark: where the CPU of one Collect submission goes, stage by stage, beside GET /v1/health.

    .venv/bin/python bench/ingest_stages.py [--count 3000] [--database sqlite|postgresql] [--stored 1000]

Calls the WSGI application in this process (no HTTP server, no network), sequentially, on a fresh store
(the same form, device and submissions as ``bench/ingest.py``), and prints the CPU time of a health check,
of a HEAD /submission and of a POST /submission, and the POST's stages: device authentication, reading
the multipart body, parsing the XML, finding the form version, the submit permission, and the write
transaction (its decision and inserts, and the database COMMIT with its fsync). The rest of a POST is
Flask, werkzeug and the reply. Stages are timed by wrapping the functions that do them
(``time.thread_time``, so waiting for the disk is not counted); the wrappers cost about a microsecond each.

This is how to read ``bench/ingest.py``'s "POST / health" ratio: the stages a POST has and a health
check does not, and what each costs.
"""

from __future__ import annotations

import argparse
import collections
import io
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import USER_AGENT, instance_xml, multipart, new_store, prepare, seed  # noqa: E402
from sqlalchemy.engine.default import DefaultDialect  # noqa: E402

import server.ingest  # noqa: E402
from server import create_app  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.ingest import group_commit  # noqa: E402
from server.openrosa import routes  # noqa: E402

# (label, owner, attribute): what is timed. The write transaction contains the decision and the COMMIT.
STAGES: list[tuple[str, Any, str]] = [
    ("device authentication (token)", routes, "_device"),
    ("multipart body", routes, "_read_body"),
    ("XML parse", routes, "parse_submission"),
    ("form version lookup", routes, "find_target"),
    ("submit permission", routes, "_may_submit"),
    ("write transaction (all of it)", group_commit.GroupCommitter, "_transaction"),
    ("  decision and inserts", server.ingest, "reconcile"),
    ("  database COMMIT (with fsync)", DefaultDialect, "do_commit"),
]
NESTED = {"  decision and inserts", "  database COMMIT (with fsync)"}


@contextmanager
def timed_stages(spent: collections.Counter[str]) -> Iterator[None]:
    """Wrap each stage's function so that the CPU time of its thread inside it adds up in ``spent``."""
    originals = [(owner, name, getattr(owner, name)) for _, owner, name in STAGES]

    def wrapper(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time_ns()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += time.thread_time_ns() - start

        return timed

    for (label, owner, name), (_, _, function) in zip(STAGES, originals, strict=True):
        setattr(owner, name, wrapper(label, function))
    try:
        yield
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


class InProcess:
    """Requests straight into the WSGI application, as a server would hand them over."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def call(self, method: str, path: str, query: str = "", body: bytes = b"", ctype: str = "") -> str:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_USER_AGENT": USER_AGENT,
            "HTTP_X_OPENROSA_VERSION": "1.0",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": ctype,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status: list[str] = []
        reply = self.app(environ, lambda s, _headers, _exc=None: status.append(s))
        for _ in reply:
            pass
        reply.close()
        return status[0]


def cpu_per_call(run: Callable[[], str], count: int, expect: str) -> float:
    """Microseconds of this process's CPU (all its threads) per call."""
    start = time.process_time()
    for _ in range(count):
        status = run()
        if not status.startswith(expect):
            raise RuntimeError(f"expected {expect}, got {status}")
    return (time.process_time() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000, help="calls of each kind")
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--stored", type=int, default=1000, help="submissions already in the store")
    args = parser.parse_args()
    store = new_store(args.database)
    try:
        project_id, token, form_pk, version_pk = prepare(store)
        seed(store, form_pk, version_pk, args.stored)
        settings = load_settings(
            overrides={"data_dir": store.data_dir, "database_url": store.url, "log_level": "WARNING"},
            environ={},
        )
        client = InProcess(create_app(settings))
        path = f"/v1/key/{token}/projects/{project_id}/submission"
        query = "deviceID=collect:bench0000000001"
        bodies = iter([multipart(instance_xml(f"uuid:{uuid.uuid4()}")) for _ in range(2 * args.count + 500)])

        def health() -> str:
            return client.call("GET", "/v1/health")

        def head() -> str:
            return client.call("HEAD", path, query)

        def post() -> str:
            body, ctype = next(bodies)
            return client.call("POST", path, query, body, ctype)

        for _ in range(500):  # warm-up: connections, statement caches
            health(), head()
        cpu_per_call(post, 500, "201")
        results = {
            "GET /v1/health": cpu_per_call(health, args.count, "200"),
            "HEAD /submission": cpu_per_call(head, args.count, "204"),
        }
        spent: collections.Counter[str] = collections.Counter()
        with timed_stages(spent):
            results["POST /submission"] = cpu_per_call(post, args.count, "201")
        print(f"{args.database}, {args.stored:,} stored, {args.count:,} calls each, in process (no HTTP):")
        for label, micros in results.items():
            print(f"  {label:34} {micros:7.0f} µs CPU")
        post_total, health_total = results["POST /submission"], results["GET /v1/health"]
        print("  POST /submission, by stage:")
        staged = 0.0
        for label, _, _ in STAGES:
            micros = spent[label] / args.count / 1000
            staged += 0 if label in NESTED else micros
            print(f"    {label:32} {micros:7.0f} µs  ({micros / post_total:4.0%})")
        rest = post_total - staged
        print(f"    {'the rest (Flask, reply)':32} {rest:7.0f} µs  ({rest / post_total:4.0%})")
        print(f"  POST / health: {post_total / health_total:.1f}x in process")
    finally:
        store.drop()


if __name__ == "__main__":
    main()
