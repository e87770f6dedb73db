"""A fault-injecting TCP proxy on loopback: it cuts connections part-way through a request (with a clean
close, or with a reset as mobile networks and proxies do), truncates answers, adds delay, and can throttle
to a link's rate. Used by the sync tests and bench/sync.py.

Each accepted connection draws its fate from a seeded random generator, so a failing run can be
replayed. Counters say how many bytes went each way and how many faults were actually injected.
"""

from __future__ import annotations

import contextlib
import queue
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Faults:
    cut_rate: float = 0.0  # share of connections cut after a random number of bytes sent upstream
    cut_within: int = 256 * 1024  # ... somewhere in the first this-many upstream bytes
    cut_after: int = 0  # ... but not before this many
    reset: bool = False  # cuts and truncations send a reset (RST, SO_LINGER 0) instead of closing cleanly
    truncate_rate: float = 0.0  # share of connections whose answer is cut part-way
    truncate_within: int = 4096
    delay: float = 0.0  # seconds of latency added to each forwarded piece, one way
    rate_bps: float = 0.0  # link rate in bits per second (0 = unlimited), each direction
    cut_every: float = 0.0  # also cut every open connection every this-many seconds (0 = never)


@dataclass
class Counters:
    upstream: int = 0
    downstream: int = 0
    connections: int = 0
    cuts: int = 0
    truncations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class FaultProxy:
    def __init__(self, target_port: int, faults: Faults | None = None, seed: int = 0) -> None:
        self.target = ("127.0.0.1", target_port)
        self.faults = faults or Faults()
        self.counters = Counters()
        self.random = random.Random(seed)
        self.enabled = True
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        if self.faults.cut_every:
            self._threads.append(threading.Thread(target=self._periodic_cuts, daemon=True))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _close(sock)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            self.counters.add("connections")
            with self._lock:
                draw = self.random.random(), self.random.random()
                cut_at = self.random.randint(self.faults.cut_after, self.faults.cut_within)
                truncate_at = self.random.randint(0, self.faults.truncate_within)
                self._open.update((client, upstream))
            faulty = self.enabled
            cut = cut_at if faulty and draw[0] < self.faults.cut_rate else None
            truncate = truncate_at if faulty and draw[1] < self.faults.truncate_rate else None
            pair = (client, upstream)
            threading.Thread(
                target=self._pump, args=(client, upstream, "upstream", cut, pair), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, "downstream", truncate, pair), daemon=True
            ).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        direction: str,
        limit: int | None,
        pair: tuple[socket.socket, ...],
    ) -> None:
        moved = 0
        faulted = False
        try:
            for arrived, data in self._pieces(src):
                if self.faults.delay:
                    # One-way latency: a piece leaves ``delay`` after it came in. Pieces are read as they
                    # come (a reader thread stamps them), so a piece that queued behind the rate limit has
                    # already waited that long: latency does not make the link narrower.
                    wait = arrived + self.faults.delay - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                if limit is not None and moved + len(data) > limit:
                    part = data[: limit - moved]
                    if part:
                        dst.sendall(part)
                        self.counters.add(direction, len(part))
                    self.counters.add("cuts" if direction == "upstream" else "truncations")
                    faulted = True
                    break
                self._send_paced(dst, data)
                moved += len(data)
                self.counters.add(direction, len(data))
        except OSError:
            pass
        finally:
            for sock in pair:  # a reset only where a fault ends it: a clean end delivers what is queued
                _close(sock, reset=faulted and self.faults.reset)
            with self._lock:
                self._open.difference_update(pair)

    def _pieces(self, src: socket.socket) -> Iterator[tuple[float, bytes]]:
        """(arrival time, bytes) of what ``src`` sends, until it closes. Without a delay or a rate, read
        directly; with one, a reader thread takes the bytes as they come, like the sender's side of a
        slow link holding what it has not sent yet."""
        if not (self.faults.delay or self.faults.rate_bps):
            while data := src.recv(16384):
                yield time.monotonic(), data
            return
        pieces: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()

        def read() -> None:
            try:
                while data := src.recv(16384):
                    pieces.put((time.monotonic(), data))
            except OSError:
                pass
            finally:
                pieces.put(None)

        threading.Thread(target=read, daemon=True).start()
        while (piece := pieces.get()) is not None:
            yield piece

    def _send_paced(self, dst: socket.socket, data: bytes) -> None:
        if not self.faults.rate_bps:
            dst.sendall(data)
            return
        step = max(512, int(self.faults.rate_bps / 8 / 20))  # about 50 ms of link time per piece
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            dst.sendall(piece)
            time.sleep(len(piece) * 8 / self.faults.rate_bps)

    def _periodic_cuts(self) -> None:
        while not self._stopping.wait(self.faults.cut_every):
            if not self.enabled:
                continue
            with self._lock:
                victims = list(self._open)
            if victims:
                self.counters.add("cuts")
            for sock in victims:
                _close(sock, reset=self.faults.reset)


def _close(sock: socket.socket, reset: bool = False) -> None:
    with contextlib.suppress(OSError):
        if reset:  # linger on, timeout 0: close() sends RST and drops what was not yet sent
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The other pump thread may be blocked reading this socket, and the kernel releases a socket
            # (sending the RST) only when no call is using it. Shutting down the reading side sends
            # nothing on the wire but ends that read, so close() resets the link now, not whenever the
            # peer next sends something.
            sock.shutdown(socket.SHUT_RD)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    sock.close()
