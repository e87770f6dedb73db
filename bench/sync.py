"""Benchmark of hub → central sync (prints figures, asserts nothing).

    .venv/bin/python bench/sync.py                      # 10,000 on loopback + 1,000 throttled (~45 min)
    .venv/bin/python bench/sync.py --loopback 2000 --throttled 100    # a quicker look

1. ``--loopback N`` submissions (10% with a ~200 KB photo) pushed from a hub to central on loopback:
   wall time, bytes on the wire (both ways, counted by a TCP proxy), the payload compressed with gzip -9
   (the compression limit) and what per-submission OpenRosa HEAD + POSTs would send.
2. ``--throttled N`` the same kind of data through a proxy at 64 kbit/s, 300 ms round trip, cutting every
   open connection every ~2 minutes: wall time against the payload's compressed size divided by the
   link rate, and the bytes re-sent per cut (against a clean run of the same data). With ``--resets``
   the cuts are resets (RST), as mobile networks send, instead of clean closes.

Targets (issue 4): wire ≤ 1.1 × gzip -9 and ≤ 0.35 × OpenRosa POSTs; re-sent bytes per cut ≤ 256 KiB;
throttled time ≤ 1.25 × compressed payload / link rate.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from server.models import Project  # noqa: E402
from sync_client.config import load_config  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.fault_proxy import FaultProxy, Faults  # noqa: E402
from tests.test_sync_support import Store, form_xml, instance_xml, new_id, photo, sqlite_env  # noqa: E402

PHOTO_BYTES = 200_000


def fill_hub(hub: Store, project_id: int, n: int) -> None:
    from server.ingest import ingest

    done = 0
    while done < n:
        with hub.app.app_context(), hub.database.write() as w:
            project = w.session.get(Project, project_id)
            for k in range(done, min(n, done + 200)):
                name = f"photo-{k}.jpg" if k % 10 == 0 else None
                files = [(name, io.BytesIO(photo(k, PHOTO_BYTES)))] if name else []
                xml = instance_xml(new_id(), f"village {k} " + "answer " * 20, name)
                ingest(
                    w,
                    project=project,
                    xml_bytes=xml,
                    attachments=files,
                    device_id=f"collect:tablet{k % 25:04d}",
                )
        done = min(n, done + 200)


@dataclass
class Payload:
    raw: int = 0  # XML + files
    gzip9: int = 0  # gzip -9 of all of it, one stream
    openrosa: int = 0  # per-submission HEAD + multipart POST, with their answers
    file_bytes: int = 0  # the photos alone
    xml_gzip9: int = 0  # gzip -9 of the form XML alone


def payload_figures(hub: Store) -> Payload:
    """The payload's sizes: raw, compressed, as per-submission OpenRosa requests, and its parts."""
    from sync_client.sources import HubStore

    store = HubStore(hub.env.data_dir)
    items = store.items()
    xmls = store.xmls(items)
    out = Payload()
    compressor = gzip.GzipFile(fileobj=(sink := io.BytesIO()), mode="wb", compresslevel=9, mtime=0)
    xml_only = gzip.GzipFile(fileobj=(xml_sink := io.BytesIO()), mode="wb", compresslevel=9, mtime=0)
    url = "http://central.example.org/v1/key/" + "t" * 64 + "/projects/1/submission"
    head = requests.Request("HEAD", url, headers=_collect_headers()).prepare()
    head_bytes = _request_size(head) + 250  # and its 204 answer's headers
    for item in items:
        xml = xmls[(item.kind, item.row_id)].encode("utf-8")
        files = [(n, store.blobs.read_bytes(s)) for n, s in sorted(item.attachments.items())]
        xml_only.write(xml)
        out.file_bytes += sum(len(d) for _n, d in files)
        for data in (xml, *(d for _n, d in files)):
            out.raw += len(data)
            compressor.write(data)
        parts = [("xml_submission_file", ("submission.xml", xml, "text/xml"))]
        parts += [(n, (n, d, "image/jpeg")) for n, d in files]
        post = requests.Request("POST", url, files=parts, headers=_collect_headers()).prepare()
        out.openrosa += head_bytes + _request_size(post) + 400  # and its 201 answer
    compressor.close()
    xml_only.close()
    out.gzip9, out.xml_gzip9 = len(sink.getvalue()), len(xml_sink.getvalue())
    store.close()
    return out


def _collect_headers() -> dict[str, str]:
    return {
        "User-Agent": "org.odk.collect.android/v2024.2.4 Dalvik/2.1.0 (Linux; U; Android 12)",
        "X-OpenRosa-Version": "1.0",
        "Accept-Encoding": "gzip",
        "Date": "Mon, 23 Nov 2026 22:00:00 GMT",
    }


def _request_size(prepared: requests.PreparedRequest) -> int:
    head = f"{prepared.method} {prepared.path_url} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in prepared.headers.items()
    )
    body = prepared.body or b""
    return len(head) + 2 + len(body if isinstance(body, bytes) else body.encode())


class Central:
    def __init__(self, folder: Path) -> None:
        self.store = Store(sqlite_env(folder))
        project = self.store.project("Bench")
        self.store.publish(project, form_xml())
        self.token = self.store.hub_token("bench-hub", project)
        self.port = free_port()
        env = {**os.environ, **{k: v for k, v in self.store.env.env.items() if k.startswith("SARHAD_")}}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "server.wsgi:app", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", "--threads", "4", "--worker-class", "gthread", "--timeout", "300"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(300):
            try:
                requests.get(f"http://127.0.0.1:{self.port}/v1/health", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("central did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def push_through(proxy: FaultProxy, central: Central, hub: Store, ledger: Path) -> tuple[float, bool]:
    from sync_client import push

    config = load_config(
        {
            "central_url": proxy.url,
            "token": central.token,
            "hub_data_dir": hub.env.data_dir,
            "ledger": ledger,
            "retries": 1000,
            "backoff_seconds": 0.5,
            "backoff_max_seconds": 10,
            "read_timeout": 300,
        },
        environ={},
    )
    start = time.monotonic()
    report = push.push(config, quiet=True)
    return time.monotonic() - start, report.complete


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loopback", type=int, default=10_000)
    parser.add_argument("--throttled", type=int, default=1_000)
    parser.add_argument("--rate-bps", type=float, default=64_000)
    parser.add_argument(
        "--resets", action="store_true", help="the throttled link's cuts are resets (RST), not clean closes"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sarhad-bench-sync-"))
    print(f"working in {work}")

    for label, n, faults in (
        ("loopback", args.loopback, None),
        (
            "throttled",
            args.throttled,
            Faults(rate_bps=args.rate_bps, delay=0.15, cut_every=120, reset=args.resets),
        ),
    ):
        if n <= 0:
            continue
        hub = Store(sqlite_env(work / f"{label}-hub"))
        hub_project = hub.project("Bench")
        hub.publish(hub_project, form_xml())
        t0 = time.monotonic()
        fill_hub(hub, hub_project, n)
        print(f"\n== {label}: {n} submissions ({n // 10} with a {PHOTO_BYTES // 1000} KB photo), "
              f"hub filled in {time.monotonic() - t0:.0f} s")  # fmt: skip
        payload = payload_figures(hub)
        raw, gz9, openrosa = payload.raw, payload.gzip9, payload.openrosa
        clean_central = Central(work / f"{label}-central-clean")
        with FaultProxy(clean_central.port) as proxy:
            seconds, complete = push_through(proxy, clean_central, hub, work / f"{label}-clean-ledger.db")
            wire_up, wire_down = proxy.counters.upstream, proxy.counters.downstream
        clean_central.stop()
        wire = wire_up + wire_down
        print(f"clean push on loopback: {seconds:.1f} s, complete={complete}")
        print(f"payload (XML + files): {raw:,} bytes; gzip -9 of it: {gz9:,} bytes")
        print(f"bytes on the wire: {wire:,} ({wire_up:,} up, {wire_down:,} down)")
        print(f"  = {wire / gz9:.3f} x gzip -9 (target <= 1.1)")
        print(f"per-submission OpenRosa HEAD + POSTs would send about {openrosa:,} bytes")
        print(f"  wire = {wire / openrosa:.3f} x OpenRosa (target <= 0.35)")
        # Why 0.35 x cannot be reached with this data: the photos are incompressible (like JPEGs) and
        # both ways must carry them once. Without them, the comparison is the protocol's own.
        print(f"  of the payload, photos are {payload.file_bytes:,} bytes ({payload.file_bytes / raw:.1%}); "
              f"the form XML gzips to {payload.xml_gzip9:,}")  # fmt: skip
        no_photos_wire, no_photos_openrosa = wire - payload.file_bytes, openrosa - payload.file_bytes
        print(f"  without the photos: wire {no_photos_wire:,} vs OpenRosa {no_photos_openrosa:,} "
              f"= {no_photos_wire / no_photos_openrosa:.3f} x")  # fmt: skip
        if faults is None:
            continue
        central = Central(work / f"{label}-central")
        with FaultProxy(central.port, faults) as proxy:
            seconds, complete = push_through(proxy, central, hub, work / f"{label}-ledger.db")
            up, cuts = proxy.counters.upstream, proxy.counters.cuts
        central.stop()
        ideal = gz9 * 8 / args.rate_bps
        kind = "reset" if args.resets else "clean close"
        print(f"throttled ({args.rate_bps / 1000:.0f} kbit/s, 300 ms RTT, a cut ({kind}) every 2 min): "
              f"{seconds:.0f} s, complete={complete}")  # fmt: skip
        ratio = seconds / ideal
        print(f"  compressed payload / link rate = {ideal:.0f} s; time = {ratio:.2f} x (target <= 1.25)")
        resent = max(0, up - wire_up)
        per_cut = resent / cuts if cuts else 0
        print(
            f"  cuts: {cuts}; bytes re-sent: {resent:,} ({per_cut / 1024:.0f} KiB per cut; target <= 256 KiB)"
        )


if __name__ == "__main__":
    main()
