"""A lean open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, whatever the answers do.

Why not k6 for latency at a fixed rate: k6 runs each request through a JavaScript VU and costs
215–310 µs of CPU per request on this box, so at 3,000 requests/s it takes most of one of the two
cores the server under test needs. This generator writes prepared request bytes to keep-alive
connections from one uvloop thread (~50 µs per request at that rate) and nothing else.

Open loop, no coordinated omission: request *i* is due at `start + i / rate`; its latency runs
from that due time, not from when it was written, so a stalled server (or a generator that fell
behind) shows in the figures instead of quietly lowering the rate. A due request waits for a free
connection when all `connections` are busy; that wait counts in its latency and in `queued`.

Each request is a `Call`: the bytes to send and, optionally, a callback that gets the status and
body and may issue follow-up calls (the staleness benchmark polls a GET until a write shows).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import Callable


@dataclasses.dataclass(slots=True)
class Call:
    """One HTTP request: its bytes, a name to tally it under, and what to do with the answer."""

    raw: bytes
    name: str
    on_answer: Callable[[int, bytes, float], None] | None = None  # (status, body, now)
    due: float = 0.0  # loop time it was meant to leave at (set by the generator)


def request_bytes(method: str, host: str, target: str, body: bytes = b"", content_type: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class Tally:
    """Latencies (ms) and statuses per call name."""

    def __init__(self):
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def add(self, name: str, status: int, ms: float) -> None:
        self.latencies[name].append(ms)
        self.statuses[name][status] += 1

    def figures(self, names: tuple[str, ...] | None = None, ok=(200, 201, 204), seconds: float | None = None) -> dict:
        names = names or tuple(self.latencies)
        values = sorted(v for name in names for v in self.latencies[name])
        failed = sum(n for name in names for status, n in self.statuses[name].items() if status not in ok)
        figures = {"requests": len(values), "failed": failed, **percentiles(values)}
        if seconds:
            figures["per_s"] = round(len(values) / seconds, 1)
        return figures


def percentiles(values: list[float]) -> dict:
    """p50/p90/p99/max of sorted values (nearest rank), in the unit they are in, rounded to 0.01."""
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}

    def rank(q: float) -> float:
        return round(values[min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))], 2)

    return {"p50_ms": rank(0.5), "p90_ms": rank(0.9), "p99_ms": rank(0.99), "max_ms": round(values[-1], 2),
            "mean_ms": round(sum(values) / len(values), 2)}


def content_length(head: bytes) -> int:
    lines = head.lower().split(b"\r\n")
    for line in lines[1:]:
        if line.startswith(b"content-length:"):
            return int(line[15:])
    raise RuntimeError(f"answer without Content-Length: {lines[0]!r}")


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one call at a time; parses `Content-Length` answers."""

    def __init__(self, generator: "OpenLoop"):
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.call: Call | None = None
        self.buffer = bytearray()
        self.body_at = -1  # offset of the body in `buffer` once the head has arrived
        self.length = 0

    def connection_made(self, transport):
        self.transport = transport

    def send(self, call: Call) -> None:
        self.call = call
        self.transport.write(call.raw)

    def data_received(self, data):
        buffer = self.buffer
        buffer += data
        if self.body_at < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.length = 0 if buffer[9:12] in (b"204", b"304") else content_length(bytes(buffer[:end]))
            self.body_at = end + 4
        if len(buffer) - self.body_at < self.length:
            return
        status = int(buffer[9:12])
        body = bytes(buffer[self.body_at:self.body_at + self.length])
        del buffer[:self.body_at + self.length]
        self.body_at = -1
        call, self.call = self.call, None
        self.generator.answered(self, call, status, body)

    def connection_lost(self, exc):
        self.transport = None
        if self.call is not None:
            self.generator.lost(self.call)
            self.call = None


class OpenLoop:
    """Sends calls to one host:port; `run()` paces a source of calls at a fixed rate."""

    def __init__(self, host: str, port: int, connections: int = 64):
        self.host, self.port, self.connections = host, port, connections
        self.tally = Tally()
        self.opened: list[_Connection] = []
        self.idle: list[_Connection] = []
        self.waiting: collections.deque[Call] = collections.deque()
        self.in_flight = 0
        self.sent = 0  # calls submitted, whatever tally they were counted in
        self.queued = 0  # calls that found every connection busy and waited for one
        self._drained: asyncio.Event | None = None
        self._closed_loop: tuple[Callable[[], Call], float] | None = None  # (next call, until)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _, connection = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
            self.opened.append(connection)
            self.idle.append(connection)

    def close(self) -> None:
        """Close every connection, busy ones too (a server shutting down waits for open ones)."""
        for connection in self.opened:
            if connection.transport is not None:
                connection.transport.close()
        self.opened.clear()
        self.idle.clear()

    def submit(self, call: Call, due: float) -> None:
        """Send `call` now, or as soon as a connection frees up; its latency counts from `due`."""
        call.due = due
        self.sent += 1
        self.in_flight += 1
        if self.idle:
            self.idle.pop().send(call)
        else:
            self.queued += 1
            self.waiting.append(call)

    def _ended(self, call: Call, status: int) -> float:
        """Count a call that ended; the time it did."""
        now = asyncio.get_running_loop().time()
        self.tally.add(call.name, status, (now - call.due) * 1000)
        self.in_flight -= 1
        return now

    def _wake_drain(self) -> None:
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()
            self._drained = None

    def answered(self, connection: _Connection, call: Call, status: int, body: bytes) -> None:
        now = self._ended(call, status)
        if self.waiting:
            connection.send(self.waiting.popleft())
        else:
            self.idle.append(connection)
        if call.on_answer is not None:
            call.on_answer(status, body, now)
        if self._closed_loop is not None and now < self._closed_loop[1]:
            self.submit(self._closed_loop[0](), now)
        self._wake_drain()  # after the callbacks: a call they submitted is still to be waited for

    def lost(self, call: Call) -> None:
        """The server closed a connection with a call on it: the call counts as failed (status 0)."""
        self._ended(call, 0)
        self._wake_drain()

    async def run(self, rate: float, seconds: float, next_call: Callable[[], Call], tick: float = 0.001) -> float:
        """Submit `rate` calls per second for `seconds`, then wait for the answers; the seconds it took to send."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = int(rate * seconds)
        sent = 0
        while sent < total:
            due_now = min(total, int((loop.time() - start) * rate) + 1)
            while sent < due_now:
                self.submit(next_call(), start + sent / rate)
                sent += 1
            await asyncio.sleep(tick)
        elapsed = loop.time() - start
        await self.drain()
        return elapsed

    async def run_closed(self, concurrency: int, seconds: float, next_call: Callable[[], Call]) -> float:
        """Closed loop: `concurrency` calls in flight, each answer sending the next, for `seconds` (the
        peak rate); latency runs from each send. Returns the seconds until the last answer."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._closed_loop = (next_call, start + seconds)
        for _ in range(concurrency):
            self.submit(next_call(), start)
        await asyncio.sleep(seconds)
        await self.drain()
        self._closed_loop = None
        return loop.time() - start

    async def drain(self, timeout: float = 60) -> None:
        """Wait until every submitted call has its answer (several callers may wait at once)."""
        if self.in_flight:
            if self._drained is None:
                self._drained = asyncio.Event()
            await asyncio.wait_for(self._drained.wait(), timeout)
