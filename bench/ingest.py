"""Benchmark: Collect-style submissions (HEAD then POST, a small form with a repeat) against gunicorn.

    .venv/bin/python bench/ingest.py [--count 2000] [--clients 8] [--database sqlite,postgresql]
                                     [--workers 2] [--threads 4] [--stored 1000,100000]

For each database it starts gunicorn on a fresh store (SQLite in a temporary folder; PostgreSQL in a
fresh schema of ``$SARHAD_BENCH_DATABASE_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``,
dropped afterwards) and measures, in the same run and on the same stack:

- the trivial round trip: ``GET /v1/health`` (one indexed ``SELECT 1``), sequentially and with N clients;
- ingest: ``--count`` submissions through HEAD + POST, sequentially and with N clients: submissions/s,
  p50/p99 latency of one submission (HEAD + POST), and the cost ratio POST / trivial round trip;
- server memory (RSS of the master and workers, and the workers' peak);
- per-submission cost with ``--stored`` submissions already in the store (seeded in bulk with direct
  inserts, which is not what is measured), to show it stays flat as the store grows.

With ``--through N`` it instead measures what a store goes through over weeks: N submissions sent
through HTTP (HEAD + POST) at ``--clients`` clients into an empty SQLite store, on ``sarhad serve``
(waitress) or gunicorn (``--server``), sampling the size of ``sarhad.db-wal`` all along. It prints the
largest the write-ahead log got, the database's size, and the ingest rate over a window of ``--window``
submissions after the first 1,000 and over the last window (the store then holds N): targets, at N =
100,000 and 8 clients, a -wal under 64 MB and the last rate within 20% of the first.

    .venv/bin/python bench/ingest.py --through 100000 [--clients 8] [--server serve|gunicorn]

Clients use ``http.client`` with keep-alive and pre-built bodies, so that the load generator (on the same
two cores) costs as little as possible; it costs the same for the trivial endpoint and for ingest.
Targets (2 cores): >= 500 submissions/s at 8 clients on SQLite; POST <= 2x the trivial round trip;
flat cost from 1k to 100k stored.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402

from server import create_app, migrate  # noqa: E402
from server.config import load_settings  # noqa: E402

XFORM = """<?xml version="1.0"?>
<h:html xmlns="http://www.w3.org/2002/xforms" xmlns:h="http://www.w3.org/1999/xhtml"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:orx="http://openrosa.org/xforms">
  <h:head><h:title>Bench</h:title>
    <model>
      <instance><data id="bench" version="1">
        <district/><reported/><age/><place/>
        <member jr:template=""><mname/><mage/></member>
        <meta><instanceID/><instanceName/></meta>
      </data></instance>
      <bind nodeset="/data/district" type="string"/>
      <bind nodeset="/data/reported" type="string"/>
      <bind nodeset="/data/age" type="int"/>
      <bind nodeset="/data/place" type="geopoint"/>
      <bind nodeset="/data/member/mname" type="string"/>
      <bind nodeset="/data/member/mage" type="int"/>
      <bind nodeset="/data/meta/instanceID" type="string" readonly="true()" jr:preload="uid"/>
    </model>
  </h:head>
  <h:body>
    <input ref="/data/district"><label>District</label></input>
    <select1 ref="/data/reported"><label>Reported</label>
      <item><label>Yes</label><value>yes</value></item><item><label>No</label><value>no</value></item></select1>
    <input ref="/data/age"><label>Age</label></input>
    <input ref="/data/place"><label>Place</label></input>
    <group ref="/data/member"><label>Member</label><repeat nodeset="/data/member">
      <input ref="/data/member/mname"><label>Name</label></input>
      <input ref="/data/member/mage"><label>Age</label></input>
    </repeat></group>
  </h:body>
</h:html>
"""
USER_AGENT = "org.odk.collect.android/v2024.3.1 Dalvik/2.1.0 (Linux; U; Android 13)"


def instance_xml(instance_id: str) -> bytes:
    return (
        '<?xml version=\'1.0\' ?><data id="bench" version="1"><district>Vanj</district>'
        "<reported>yes</reported><age>34</age><place>38.37 71.45 1800 5</place>"
        "<member><mname>Гулнора</mname><mage>12</mage></member><member><mname>Фаррух</mname><mage>9</mage>"
        f"</member><meta><instanceID>{instance_id}</instanceID><instanceName>Vanj</instanceName></meta></data>"
    ).encode()


def multipart(xml: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="xml_submission_file"; '
        f'filename="submission.xml"\r\nContent-Type: text/xml\r\n\r\n'.encode()
        + xml
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


# ---- the store and the server -----------------------------------------------------------------------


@dataclass
class Store:
    data_dir: Path
    url: str
    schema: str | None
    base_pg: str | None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SARHAD_DATA_DIR": str(self.data_dir),
            "SARHAD_DATABASE_URL": self.url,
            "SARHAD_LOG_LEVEL": "WARNING",
        }

    def drop(self) -> None:
        if self.schema and self.base_pg:
            engine = create_engine(self.base_pg)
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            engine.dispose()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def new_store(kind: str) -> Store:
    data_dir = Path(tempfile.mkdtemp(prefix="sarhad-bench-"))
    if kind == "sqlite":
        store = Store(data_dir, f"sqlite:///{data_dir / 'sarhad.db'}", None, None)
    else:
        base = os.environ.get(
            "SARHAD_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        engine = create_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
        sep = "&" if "?" in base else "?"
        store = Store(data_dir, f"{base}{sep}options=-csearch_path%3D{schema}", schema, base)
    migrate.upgrade(store.url)
    return store


def prepare(store: Store) -> tuple[int, str, int, int]:
    """Publish the bench form and create a device: (project id, token, form pk, form version pk)."""
    from server.devices import create_app_user
    from server.forms import publish, source_from_xform
    from server.projects import create_project

    settings = load_settings(
        overrides={"data_dir": store.data_dir, "database_url": store.url, "log_level": "WARNING"}, environ={}
    )
    app = create_app(settings)
    database = app.extensions["sarhad.db"]
    with app.app_context(), database.write() as w:
        project = create_project(w.session, "bench")
        outcome = publish(w, project, source_from_xform(XFORM.encode(), settings))
        _, token = create_app_user(w.session, project, "bench tablet", realm=settings.digest_realm)
        ids = (project.id, token, outcome.form.id, outcome.version.id)
    database.engine.dispose()
    return ids


def seed(store: Store, form_pk: int, version_pk: int, total: int) -> None:
    """Bring the store to ``total`` submissions with bulk inserts (not through ingest: not measured)."""
    from server.models import Submission, SubmissionVersion

    engine = create_engine(store.url)
    with engine.begin() as conn:
        have = conn.execute(select(func.count()).select_from(Submission)).scalar_one()
        top_sub = conn.execute(select(func.coalesce(func.max(Submission.id), 0))).scalar_one()
        top_ver = conn.execute(select(func.coalesce(func.max(SubmissionVersion.id), 0))).scalar_one()
    now = dt.datetime.now(dt.UTC)
    batch = 5000
    for start in range(have, total, batch):
        n = min(batch, total - start)
        subs, versions = [], []
        for k in range(n):
            sid, vid = top_sub + start - have + k + 1, top_ver + start - have + k + 1
            iid = f"uuid:{uuid.uuid4()}"
            xml = instance_xml(iid)
            subs.append(
                {
                    "id": sid,
                    "form_id": form_pk,
                    "instance_id": iid,
                    "review_state": "received",
                    "created_at": now,
                }
            )
            versions.append(
                {
                    "id": vid,
                    "submission_id": sid,
                    "form_id": form_pk,
                    "form_version_id": version_pk,
                    "instance_id": iid,
                    "xml": xml.decode(),
                    "sha256": hashlib.sha256(xml).hexdigest(),
                    "encrypted": False,
                    "source": "device",
                    "received_at": now,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(Submission), subs)
            conn.execute(insert(SubmissionVersion), versions)
            conn.execute(
                text("UPDATE submission SET current_version_id = id + :d WHERE current_version_id IS NULL"),
                {"d": top_ver - top_sub},
            )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            for table in ("submission", "submission_version"):
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                conn.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))"))
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gunicorn:
    def __init__(self, store: Store, workers: int, threads: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "server.wsgi:app", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
             "--keep-alive", "30", "--timeout", "120"],
            env=store.env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v1/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def pids(self) -> list[int]:
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [self.proc.pid, *map(int, kids)]

    def memory_mb(self) -> tuple[float, float]:
        """(RSS of master + workers now, largest worker peak) in MB."""

        def field(pid: int, name: str) -> int:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(name + ":"):
                    return int(line.split()[1])
            return 0

        pids = self.pids()
        return sum(field(p, "VmRSS") for p in pids) / 1024, max(field(p, "VmHWM") for p in pids[1:]) / 1024

    def cpu_seconds(self) -> float:
        """CPU time used so far by the master and workers (user + system)."""
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Serve(Gunicorn):
    """``sarhad serve`` (waitress, one process) instead of gunicorn."""

    def __init__(self, store: Store, threads: int) -> None:  # not super(): that would start gunicorn
        self.port = free_port()
        env = {**store.env(), "SARHAD_SERVE_THREADS": str(threads)}
        self.log = store.data_dir / "serve.log"  # a pipe nobody reads would stop the server when full
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port)],
                env=env, cwd=ROOT, stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v1/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("sarhad serve did not start")

    def pids(self) -> list[int]:
        return [self.proc.pid]


# ---- load -----------------------------------------------------------------------------------------------


@dataclass
class Run:
    count: int
    seconds: float
    latencies: list[float]  # one operation each (a submission is HEAD + POST)
    post_latencies: list[float]
    server_cpu: float = 0.0  # seconds of CPU the server used during the run
    client_cpu: float = 0.0

    @property
    def server_cpu_ms(self) -> float:
        return self.server_cpu / self.count * 1000

    @property
    def client_cpu_ms(self) -> float:
        return self.client_cpu / self.count * 1000

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def pct(self, p: float, values: list[float] | None = None) -> float:
        data = sorted(values if values is not None else self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))] * 1000


class Client:
    """One device: a keep-alive connection, Collect's headers and deviceID."""

    def __init__(self, port: int, token: str, project_id: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.prefix = f"/v1/key/{token}/projects/{project_id}"
        self.query = f"?deviceID=collect:{uuid.uuid4().hex[:16]}"
        self.headers = {"User-Agent": USER_AGENT, "X-OpenRosa-Version": "1.0", "Accept-Encoding": "gzip"}

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> int:
        headers = dict(self.headers)
        if ctype:
            headers["Content-Type"] = ctype
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        response.read()
        return response.status

    def health(self) -> None:
        assert self.call("GET", "/v1/health") == 200

    def submit(self, body: bytes, ctype: str) -> float:
        """HEAD then POST, as Collect does; returns the POST's own latency."""
        assert self.call("HEAD", f"{self.prefix}/submission{self.query}") == 204
        start = time.perf_counter()
        status = self.call("POST", f"{self.prefix}/submission{self.query}", body, ctype)
        if status != 201:
            raise RuntimeError(f"POST answered {status}")
        return time.perf_counter() - start


def drive(clients: list[Client], count: int, op: Callable[[Client, int], float | None]) -> Run:
    latencies: list[float] = []
    posts: list[float] = []
    lock = threading.Lock()
    next_index = iter(range(count))

    def work(client: Client) -> None:
        mine, mine_posts = [], []
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            start = time.perf_counter()
            post = op(client, i)
            mine.append(time.perf_counter() - start)
            if post is not None:
                mine_posts.append(post)
        with lock:
            latencies.extend(mine)
            posts.extend(mine_posts)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Run(count, time.perf_counter() - start, latencies, posts)


def bodies(count: int) -> list[tuple[bytes, str]]:
    return [multipart(instance_xml(f"uuid:{uuid.uuid4()}")) for _ in range(count)]


def measure(server: Gunicorn, token: str, project_id: int, count: int, n_clients: int) -> dict[str, Any]:
    def make(n: int) -> list[Client]:
        return [Client(server.port, token, project_id) for _ in range(n)]

    results: dict[str, Any] = {}
    health_n = max(count, 2000)
    drive(make(n_clients), 300, lambda c, i: c.health())  # warm-up

    def timed(run: Callable[[], Run]) -> Run:
        server_before, client_before = server.cpu_seconds(), time.process_time()
        result = run()
        result.server_cpu = server.cpu_seconds() - server_before
        result.client_cpu = time.process_time() - client_before
        return result

    for label, n in (("seq", 1), ("conc", n_clients)):
        results[f"health_{label}"] = timed(lambda n=n: drive(make(n), health_n, lambda c, i: c.health()))
        payloads = bodies(count)
        results[f"ingest_{label}"] = timed(
            lambda n=n, p=payloads: drive(make(n), count, lambda c, i: c.submit(*p[i]))
        )
    results["memory"] = server.memory_mb()
    return results


def report(kind: str, r: dict[str, Any], n_clients: int) -> None:
    for label, clients in (("seq", 1), ("conc", n_clients)):
        health, ingest = r[f"health_{label}"], r[f"ingest_{label}"]
        health_ms = statistics.mean(health.latencies) * 1000
        post_ms = statistics.mean(ingest.post_latencies) * 1000
        print(
            f"  {kind:10} {clients} client(s): ingest {ingest.rate:7.1f} submissions/s "
            f"(p50 {ingest.pct(50):5.1f} ms, p99 {ingest.pct(99):6.1f} ms per HEAD+POST; "
            f"POST p50 {ingest.pct(50, ingest.post_latencies):5.1f} ms) | "
            f"GET /v1/health {health.rate:7.1f}/s (mean {health_ms:4.1f} ms) | "
            f"POST/health {post_ms / health_ms:4.2f}x, submission/health {health.rate / ingest.rate:4.2f}x"
        )
        print(
            f"  {'':10} {clients} client(s): CPU per submission: server {ingest.server_cpu_ms:.2f} ms, "
            f"load generator {ingest.client_cpu_ms:.2f} ms | per health call: server "
            f"{health.server_cpu_ms:.2f} ms, load generator {health.client_cpu_ms:.2f} ms"
        )
    rss, peak = r["memory"]
    print(f"  {kind:10} server RSS {rss:.0f} MB (master + workers), largest worker peak {peak:.0f} MB")


def growth_run(server_kind: str, total: int, n_clients: int, window: int, workers: int, threads: int) -> None:
    """``total`` submissions through HTTP into an empty SQLite store; the -wal's largest size and the
    ingest rate early on and at the end."""
    store = new_store("sqlite")
    try:
        project_id, token, _form_pk, _version_pk = prepare(store)
        if server_kind == "serve":
            server: Gunicorn = Serve(store, threads * workers)
        else:
            server = Gunicorn(store, workers, threads)
        wal = store.data_dir / "sarhad.db-wal"
        largest = [0]
        done = threading.Event()

        # (submissions answered, seconds, server CPU seconds), every half second
        trace: list[tuple[int, float, float]] = []

        def sample() -> None:
            while not done.wait(0.5):
                with contextlib.suppress(OSError):  # not there between checkpoints
                    largest[0] = max(largest[0], wal.stat().st_size)
                trace.append((len(finished), time.perf_counter(), server.cpu_seconds()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        finished: list[float] = []
        lock = threading.Lock()
        counter = iter(range(total))
        started = time.perf_counter()

        def work() -> None:
            client = Client(server.port, token, project_id)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                client.submit(*multipart(instance_xml(f"uuid:{uuid.uuid4()}")))
                with lock:
                    finished.append(time.perf_counter())
                    n = len(finished)
                if n % 10_000 == 0:
                    print(
                        f"  {n:,} stored after {finished[-1] - started:.0f} s; -wal now "
                        f"{wal.stat().st_size / 2**20:.1f} MB, largest so far {largest[0] / 2**20:.1f} MB",
                        flush=True,
                    )

        try:
            threads_ = [threading.Thread(target=work) for _ in range(n_clients)]
            for t in threads_:
                t.start()
            for t in threads_:
                t.join()
        finally:
            done.set()
            sampler.join()
            server.stop()
        finished.sort()
        if len(finished) < total:
            log = getattr(server, "log", None)
            tail = log.read_text()[-2000:] if log else ""
            raise SystemExit(f"only {len(finished)} of {total} submissions were answered\n{tail}")

        def rate(first: int, last: int) -> float:
            return (last - first) / (finished[last - 1] - finished[first - 1])

        def cpu_ms(first: int, last: int) -> float:
            """Server CPU per submission between the samples nearest these counts: unlike the rate, it
            hardly moves when other work shares the machine."""
            a = next(x for x in trace if x[0] >= first)
            b = next((x for x in trace if x[0] >= last), trace[-1])
            return (b[2] - a[2]) / max(1, b[0] - a[0]) * 1000

        early_from = min(1000, max(1, total - window))
        early = rate(early_from, min(total, early_from + window))
        late = rate(max(1, total - window), total)
        early_cpu = cpu_ms(early_from, early_from + window)
        late_cpu = cpu_ms(max(1, total - window), total)
        db_mb = (store.data_dir / "sarhad.db").stat().st_size / 2**20
        label = "sarhad serve (waitress)" if server_kind == "serve" else f"gunicorn {workers}x{threads}"
        print(f"{label}, SQLite, {total:,} submissions through HEAD + POST at {n_clients} clients:")
        print(f"  overall {total / (finished[-1] - started):.1f} submissions/s; database {db_mb:.1f} MB")
        print(f"  largest sarhad.db-wal seen: {largest[0] / 2**20:.1f} MB (target < 64 MB)")
        print(
            f"  ingest rate at {early_from:,} stored: {early:.1f}/s; at {total:,} stored: {late:.1f}/s "
            f"({late / early:.0%} of the early rate; target >= 80%)"
        )
        print(
            f"  server CPU per submission at {early_from:,} stored: {early_cpu:.2f} ms; at {total:,} stored: "
            f"{late_cpu:.2f} ms ({early_cpu / late_cpu:.0%} of the early speed); load average now "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
    finally:
        store.drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000, help="submissions per measurement")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--database", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--stored", default="1000,100000", help="store sizes for the growth check")
    parser.add_argument(
        "--through", type=int, default=0, help="instead: this many submissions through HTTP (WAL and rate)"
    )
    parser.add_argument("--server", choices=("serve", "gunicorn"), default="serve", help="with --through")
    parser.add_argument("--window", type=int, default=2000, help="with --through: submissions per window")
    args = parser.parse_args()
    if args.through:
        growth_run(args.server, args.through, args.clients, args.window, args.workers, args.threads)
        return
    sizes = [int(s) for s in args.stored.split(",") if s]
    print(f"gunicorn gthread, {args.workers} workers x {args.threads} threads; {os.cpu_count()} CPUs")
    for kind in args.database.split(","):
        store = new_store(kind)
        try:
            project_id, token, form_pk, version_pk = prepare(store)
            print(f"{kind}:")
            for size in sizes:
                seed(store, form_pk, version_pk, size)
                server = Gunicorn(store, args.workers, args.threads)
                try:
                    report(
                        f"{size:,} stored",
                        measure(server, token, project_id, args.count, args.clients),
                        args.clients,
                    )
                finally:
                    server.stop()
        finally:
            store.drop()


if __name__ == "__main__":
    main()
