"""loadtest/openloop.py: the generator the write benchmark's latency figures come from.

Against a real aiohttp server on a real socket: answers of every framing the apps send are read
whole, a closed loop keeps its calls in flight, and an open loop counts latency from each call's
scheduled time, so a server stall shows in the figures of every call due during it.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.test_utils import TestServer

from loadtest.openloop import Call, OpenLoop, percentiles, request_bytes


def app(stalls: list[float]) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query.get("size", "3")))

    async def vote(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    async def stall(request: web.Request) -> web.Response:
        time.sleep(stalls.pop() if stalls else 0)  # blocks the event loop, as a stalled server would
        return web.Response(text="late")

    application = web.Application()
    application.add_routes([web.get("/ok", ok), web.put("/vote", vote), web.get("/stall", stall)])
    return application


async def started(stalls: list[float] | None = None) -> TestServer:
    server = TestServer(app(stalls if stalls is not None else []))
    await server.start_server()
    return server


async def test_answers_of_every_framing_are_read_whole_and_tallied():
    server = await started()
    generator = OpenLoop(server.host, server.port, connections=2)
    await generator.open()
    bodies = []
    host = f"{server.host}:{server.port}"
    calls = [Call(request_bytes("GET", host, "/ok?size=100000"), "big", lambda s, b, t: bodies.append((s, b))),
             Call(request_bytes("PUT", host, "/vote", b"", "application/x-www-form-urlencoded"), "vote",
                  lambda s, b, t: bodies.append((s, b))),
             Call(request_bytes("GET", host, "/missing"), "missing")]
    for call in calls:
        generator.submit(call, asyncio.get_running_loop().time())
    await generator.drain(timeout=10)
    generator.close()
    await server.close()
    assert sorted(bodies) == [(200, b"x" * 100000), (204, b"")]
    assert dict(generator.tally.statuses["missing"]) == {404: 1}
    assert generator.tally.figures(("big", "vote"))["failed"] == 0
    assert generator.tally.figures()["failed"] == 1
    assert generator.queued == 1  # two connections, three calls: one waited


async def test_closed_loop_keeps_its_calls_in_flight_until_the_time_is_up():
    server = await started()
    generator = OpenLoop(server.host, server.port, connections=4)
    await generator.open()
    raw = request_bytes("GET", f"{server.host}:{server.port}", "/ok")
    elapsed = await generator.run_closed(4, 0.3, lambda: Call(raw, "ok"))
    generator.close()
    await server.close()
    figures = generator.tally.figures(seconds=elapsed)
    assert figures["requests"] > 50 and figures["failed"] == 0
    assert generator.queued == 0 and generator.in_flight == 0


async def test_open_loop_latency_counts_from_the_scheduled_time_not_the_send():
    stall = 0.2
    server = await started([stall])
    generator = OpenLoop(server.host, server.port, connections=8)
    await generator.open()
    host = f"{server.host}:{server.port}"
    sent = []

    def next_call() -> Call:
        sent.append(None)
        return Call(request_bytes("GET", host, "/stall" if len(sent) == 5 else "/ok"), "call")

    # 200 calls/s for 1 s: the fifth call blocks the loop for 0.2 s, during which ~40 more fall due.
    await generator.run(200, 1.0, next_call)
    generator.close()
    await server.close()
    latencies = sorted(generator.tally.latencies["call"])
    assert len(latencies) == 200 and generator.tally.figures()["failed"] == 0
    # Calls due during the stall were sent late; their latency includes the wait (a generator
    # timing from the send would report ~1 ms for them).
    assert sum(1 for ms in latencies if ms > 100) >= 15
    assert latencies[0] < 50


def test_percentiles_use_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0, "max_ms": 100.0,
                                   "mean_ms": 50.5}
    assert percentiles([])["p99_ms"] is None
